/**
 * The proxies a client may send jobs to: those the DHT (`proxy` key) or
 * presence gossip names, each attested once (fresh nonce, the network's
 * policy) before its first job. Jobs go to the attested proxy with the
 * fewest jobs in flight from us; one that broke the protocol sits out a
 * while. libp2p keeps the connections open between jobs.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { P2P_MULTIADDR_CODE } from '../../p2p/constants.js'
import { Role } from '../../gen/node.pb.js'
import { InferenceError } from '../../inference/types.js'
import type { ProxyFinder } from './proxy-finder.js'
import type { PeerDirectory } from '../../p2p/peer-directory.js'
import type { PeerAttestations } from '../../tee/peer-attestations.js'
import type { Connection, Logger, PeerId, PeerStore } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** The parts of the libp2p node the pool uses to make a proxy dialable. */
export interface ProxyPoolHost {
  peerStore: Pick<PeerStore, 'merge'>
  getConnections(peer?: PeerId): Connection[]
}

/** A proxy that broke the protocol or failed attestation is not used for this long. */
const DEMOTION_MS = 30_000
/** Jobs in flight a proxy we can already pay may have beyond the least loaded one and still be preferred. */
const PAYABLE_SLACK = 4
/** Attesting one proxy may take this long before the client moves on. */
const ATTEST_WAIT_MS = 5_000

export interface ProxyPoolStatus {
  proxies: Array<{ peerId: string, attested: boolean, jobs: number, demotedUntil: string | null }>
}

export class ProxyPool {
  private readonly host: ProxyPoolHost
  private readonly finder: ProxyFinder
  private readonly directory: PeerDirectory
  private readonly attestations: PeerAttestations
  private readonly log: Logger
  private readonly jobs = new Map<string, number>()
  private readonly demoted = new Map<string, number>()

  constructor (host: ProxyPoolHost, finder: ProxyFinder, directory: PeerDirectory, attestations: PeerAttestations, log: Logger) {
    this.host = host
    this.finder = finder
    this.directory = directory
    this.attestations = attestations
    this.log = log
  }

  /** Every proxy heard of, through the DHT or presence. */
  known (): string[] {
    const ids = new Set(this.finder.list().map(p => p.peerId))
    for (const record of this.directory.list()) if (record.role === Role.PROXY) ids.add(record.peerId)
    return [...ids]
  }

  /** Proxies whose evidence verified, attesting the rest now; least loaded first. */
  async attested (signal: AbortSignal): Promise<string[]> {
    return (await this.attestAll(signal)).ok
  }

  private async attestAll (signal: AbortSignal, avoid?: string): Promise<{ ok: string[], refused: Array<{ peerId: string, reason: string }> }> {
    const now = Date.now()
    const known = this.known().filter(id => id !== avoid)
    let usable = known.filter(id => (this.demoted.get(id) ?? 0) <= now)
    // every proxy is sitting out: try them again anyway (one may be back), the longest demoted first,
    // rather than fail every request until a demotion runs out
    if (usable.length === 0) usable = known.sort((a, b) => (this.demoted.get(a) ?? 0) - (this.demoted.get(b) ?? 0))
    const wait = AbortSignal.any([signal, AbortSignal.timeout(ATTEST_WAIT_MS)])
    const results = await Promise.allSettled(usable.map(async id => {
      if (this.attestations.cached(id) != null) return id
      const peer = peerIdFromString(id)
      await this.rememberAddrs(peer)
      await raceAbort(this.attestations.attest(peer), wait)
      return id
    }))
    const ok: string[] = []
    const refused: Array<{ peerId: string, reason: string }> = []
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') {
        ok.push(r.value)
      } else {
        const reason = (r.reason as Error).message
        refused.push({ peerId: usable[i], reason })
        this.log('proxy %s not usable - %s', usable[i], reason)
      }
    }
    return { ok: ok.sort((a, b) => (this.jobs.get(a) ?? 0) - (this.jobs.get(b) ?? 0)), refused }
  }

  /**
   * The proxy for the next job: the least loaded, preferring one in `payable`
   * (a channel is open to it, so the job need not wait for one to open on
   * chain) unless it has PAYABLE_SLACK more jobs in flight than the least
   * loaded. `avoid` (the proxy that just failed) is left out.
   */
  async pick (signal: AbortSignal, payable?: Set<string>, avoid?: string): Promise<string> {
    const { ok, refused } = await this.attestAll(signal, avoid)
    if (ok.length === 0) {
      const known = this.known().length
      const why = refused.slice(0, 3).map(r => `${r.peerId.slice(-8)}: ${r.reason}`).join('; ')
      throw new InferenceError('unavailable', known === 0
        ? 'no proxy is known yet; the client is still joining the swarm'
        : `none of the ${known} known proxies presented evidence this client accepts${why === '' ? '' : ` (${why})`}`, { retryAfterMs: 2_000 })
    }
    const paid = payable == null ? undefined : ok.find(id => payable.has(id))
    if (paid != null && (this.jobs.get(paid) ?? 0) <= (this.jobs.get(ok[0]) ?? 0) + PAYABLE_SLACK) return paid
    return ok[0]
  }

  /**
   * Puts the addresses the DHT record and presence gossip gave for a proxy
   * into the peer store, so the first dial goes straight to them instead of
   * asking the DHT for the peer (which can take seconds, or fail).
   */
  private async rememberAddrs (peer: PeerId): Promise<void> {
    if (this.host.getConnections(peer).length > 0) return
    const id = peer.toString()
    const known = new Set([
      ...(this.finder.list().find(p => p.peerId === id)?.addrs ?? []),
      ...(this.directory.get(id)?.addrs ?? [])
    ])
    const multiaddrs: Multiaddr[] = []
    for (const addr of known) {
      try {
        multiaddrs.push(multiaddr(addr).decapsulateCode(P2P_MULTIADDR_CODE))
      } catch {
        // an unparsable address from the network is skipped
      }
    }
    if (multiaddrs.length === 0) return
    await this.host.peerStore.merge(peer, { multiaddrs }).catch(err => { this.log('could not store addresses of %s - %s', id, (err as Error).message) })
  }

  jobStarted (proxy: string): void {
    this.jobs.set(proxy, (this.jobs.get(proxy) ?? 0) + 1)
  }

  jobEnded (proxy: string): void {
    const n = (this.jobs.get(proxy) ?? 1) - 1
    if (n <= 0) this.jobs.delete(proxy)
    else this.jobs.set(proxy, n)
  }

  /** Keeps a misbehaving proxy out of rotation for a while and re-attests it after. */
  demote (proxy: string): void {
    this.demoted.set(proxy, Date.now() + DEMOTION_MS)
    this.attestations.forget(proxy)
  }

  status (): ProxyPoolStatus {
    return {
      proxies: this.known().map(id => {
        const until = this.demoted.get(id) ?? 0
        return { peerId: id, attested: this.attestations.cached(id) != null, jobs: this.jobs.get(id) ?? 0, demotedUntil: until > Date.now() ? new Date(until).toISOString() : null }
      })
    }
  }
}

async function raceAbort<T> (promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) throw signal.reason
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}

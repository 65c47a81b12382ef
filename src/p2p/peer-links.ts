/**
 * Keeps this node directly connected to a few peers of one role it hears of
 * through presence gossip: a worker to `target` proxies, chosen at random so
 * that workers spread over the proxies. A worker's capacity announcements are
 * published without subscribing to the capacity topics, so they enter the
 * proxies' gossip mesh through these links and reach every other proxy from
 * there; nothing else needs a standing connection (attestation challenges
 * and jobs connect on demand). A link that drops is replaced.
 *
 * Presence may not have named any peer of the role yet (heartbeats are rare
 * in a large swarm, and a connection can die before /cocoon/info tells who
 * is at the other end), so while no candidate is known the links come from
 * a DHT lookup instead (`lookup`: the proxies' provider records), at most
 * once per LOOKUP_GAP_MS, and not before LOOKUP_GAP_MS after start: a
 * starting node usually hears of peers within seconds (/cocoon/info from the
 * peers its first DHT query meets), and a lookup at every start was a DHT
 * query per joining node for nothing. A lookup that names nobody new (the
 * swarm has fewer peers of the role than `target`) doubles the gap, up to
 * LOOKUP_GAP_MAX_MS: otherwise every worker of a one-proxy swarm would query
 * the DHT every LOOKUP_GAP_MS for ever.
 *
 * A node with no connection at all is brought back by BootstrapRedial.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { DIAL_TIMEOUT_MS, P2P_MULTIADDR_CODE } from './constants.js'
import type { CocoonLibp2p } from './node.js'
import type { PeerDirectory, PeerRecord } from './peer-directory.js'
import type { Role } from '../gen/node.pb.js'
import type { Logger, PeerId, PeerInfo } from '@libp2p/interface'

/** Bursts of directory updates and disconnects are handled in one pass. */
const MAINTAIN_DELAY_MS = 200
/** A peer that could not be dialled is not tried again for this long. */
const FAILED_DIAL_BACKOFF_MS = 30_000
/** How often the links are checked without an event (a node with no connection gets none). */
const CHECK_INTERVAL_MS = 5_000
/** Least time between two DHT lookups for candidates, and how long one may take. */
const LOOKUP_GAP_MS = 10_000
/** The longest gap between lookups that keep finding nobody new. */
const LOOKUP_GAP_MAX_MS = 5 * 60_000
const LOOKUP_TIMEOUT_MS = 10_000

export interface PeerLinksInit {
  /** The role of the peers to link to. */
  role: Role
  /** How many to keep linked. */
  target: number
  log: Logger
  /** Peers of the role from elsewhere (the DHT), asked while the directory names none to link to. */
  lookup?: (signal: AbortSignal) => AsyncIterable<PeerInfo>
  /** Period of the check that runs without events (tests shorten it). */
  checkIntervalMs?: number
  lookupGapMs?: number
  random?: () => number
}

export class PeerLinks {
  private readonly node: CocoonLibp2p
  private readonly directory: PeerDirectory
  private readonly role: Role
  private readonly target: number
  private readonly log: Logger
  private readonly random: () => number
  private readonly dialing = new Set<string>()
  /** Peers this node linked to itself (rather than met through a DHT query or a challenge). */
  private readonly chosen = new Set<string>()
  private readonly failedAt = new Map<string, number>()
  private readonly checkIntervalMs: number
  private readonly lookup?: (signal: AbortSignal) => AsyncIterable<PeerInfo>
  /** Peers linked because the lookup named them: links even before presence or /cocoon/info says their role. */
  private readonly lookedUp = new Set<string>()
  private lookupController?: AbortController
  private lastLookupMs = -Infinity
  private readonly lookupGapMs: number
  /** The gap now: lookupGapMs, doubled after each lookup that found nobody new. */
  private gapMs: number
  private checkTimer?: ReturnType<typeof setInterval>
  private pending?: ReturnType<typeof setTimeout>
  private running = false
  private readonly onUpdate = (evt: CustomEvent<PeerRecord>): void => { if (evt.detail.role === this.role) this.maintainSoon() }
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => { if (this.directory.get(evt.detail.toString())?.role === this.role) this.maintainSoon() }

  constructor (node: CocoonLibp2p, directory: PeerDirectory, init: PeerLinksInit) {
    this.node = node
    this.directory = directory
    this.role = init.role
    this.target = init.target
    this.log = init.log
    this.random = init.random ?? Math.random
    this.checkIntervalMs = init.checkIntervalMs ?? CHECK_INTERVAL_MS
    this.lookup = init.lookup
    this.lookupGapMs = init.lookupGapMs ?? LOOKUP_GAP_MS
    this.gapMs = this.lookupGapMs
  }

  /** The least time until the next DHT lookup for candidates. */
  get lookupGap (): number {
    return this.gapMs
  }

  start (): void {
    this.running = true
    this.lastLookupMs = Date.now()
    this.directory.addEventListener('peer:updated', this.onUpdate)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.checkTimer = setInterval(() => { this.maintain() }, this.checkIntervalMs)
    this.checkTimer.unref?.()
    this.maintain()
  }

  stop (): void {
    this.running = false
    clearInterval(this.checkTimer)
    this.lookupController?.abort()
    clearTimeout(this.pending)
    this.pending = undefined
    this.directory.removeEventListener('peer:updated', this.onUpdate)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
  }

  /**
   * Whether the connection to `peerId` is one of the `target` links to keep
   * (the ones this node dialled as links first, then others of the role),
   * so that closing idle connections never takes the node below its links.
   */
  keeps (peerId: string): boolean {
    const linked = this.linked()
    if (!linked.includes(peerId)) return false
    linked.sort((a, b) => Number(this.chosen.has(b)) - Number(this.chosen.has(a)))
    return linked.indexOf(peerId) < this.target
  }

  /** Peers of the role this node is connected to now. */
  linked (): string[] {
    const peers = new Set<string>()
    for (const c of this.node.getConnections()) {
      const id = c.remotePeer.toString()
      const role = this.directory.get(id)?.role
      if (role === this.role || (role == null && this.lookedUp.has(id))) peers.add(id)
    }
    return [...peers]
  }

  private maintainSoon (): void {
    if (!this.running || this.pending != null) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      this.maintain()
    }, MAINTAIN_DELAY_MS)
    this.pending.unref?.()
  }

  /** Dials random unconnected peers of the role until `target` are linked or being dialled. */
  private maintain (): void {
    if (!this.running) return
    const linked = new Set(this.linked())
    let missing = this.target - linked.size - this.dialing.size
    if (missing <= 0) return
    const nowMs = Date.now()
    for (const [id, atMs] of this.failedAt) if (nowMs - atMs > FAILED_DIAL_BACKOFF_MS) this.failedAt.delete(id)
    const self = this.node.peerId.toString()
    const candidates = this.directory.list().filter(r =>
      r.role === this.role && r.peerId !== self && !linked.has(r.peerId) && !this.dialing.has(r.peerId) &&
      nowMs - (this.failedAt.get(r.peerId) ?? -Infinity) > FAILED_DIAL_BACKOFF_MS)
    while (missing > 0 && candidates.length > 0) {
      const [record] = candidates.splice(Math.floor(this.random() * candidates.length), 1)
      this.link(record.peerId, record.addrs)
      missing--
    }
    if (missing > 0) this.lookupCandidates(missing, linked)
  }

  /** Links to up to `wanted` peers the lookup names (random among those it finds), unless one ran lately. */
  private lookupCandidates (wanted: number, linked: Set<string>): void {
    if (this.lookup == null || this.lookupController != null || Date.now() - this.lastLookupMs < this.gapMs) return
    this.lastLookupMs = Date.now()
    const controller = new AbortController()
    this.lookupController = controller
    const self = this.node.peerId.toString()
    const found = new Map<string, string[]>()
    void (async () => {
      const signal = AbortSignal.any([controller.signal, AbortSignal.timeout(LOOKUP_TIMEOUT_MS)])
      for await (const peer of this.lookup!(signal)) {
        const id = peer.id.toString()
        if (id === self || linked.has(id) || this.dialing.has(id) || this.failedAt.has(id)) continue
        found.set(id, peer.multiaddrs.map(ma => ma.toString()))
      }
    })()
      .catch(err => { this.log('lookup for peers to link to failed - %s', (err as Error).message) })
      .finally(() => {
        this.lookupController = undefined
        if (!this.running) return
        const ids = [...found.keys()]
        this.log('lookup found %d peers to link to', ids.length)
        this.gapMs = ids.length === 0 ? Math.min(LOOKUP_GAP_MAX_MS, Math.max(this.gapMs, this.lookupGapMs) * 2) : this.lookupGapMs
        for (let n = 0; n < wanted && ids.length > 0; n++) {
          const [id] = ids.splice(Math.floor(this.random() * ids.length), 1)
          if (this.dialing.has(id)) continue
          this.lookedUp.add(id)
          this.link(id, found.get(id) ?? [])
        }
      })
  }

  private link (id: string, addrStrings: string[]): void {
    let peer: PeerId
    try {
      peer = peerIdFromString(id)
    } catch {
      return
    }
    const addrs = addrStrings.flatMap(a => {
      try {
        const ma = multiaddr(a)
        return [ma.getComponents().some(c => c.code === P2P_MULTIADDR_CODE) ? ma : ma.encapsulate(`/p2p/${id}`)]
      } catch { return [] }
    })
    this.dialing.add(id)
    this.node.dial(addrs.length > 0 ? addrs : peer, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .then(() => {
        this.failedAt.delete(id)
        this.chosen.add(id)
        if (this.chosen.size > this.target * 4) this.chosen.delete(this.chosen.values().next().value as string)
        this.log('linked to %s', id)
      })
      .catch(err => {
        this.failedAt.set(id, Date.now())
        this.log('could not link to %s - %s', id, (err as Error).message)
      })
      .finally(() => {
        this.dialing.delete(id)
        // a failed dial leaves a gap to fill with another peer
        this.maintainSoon()
      })
  }
}

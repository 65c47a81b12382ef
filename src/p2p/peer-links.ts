/**
 * Keeps this node directly connected to a few peers of one role it hears of
 * through presence gossip: a worker to `target` proxies, chosen at random so
 * that workers spread over the proxies. A worker's capacity announcements are
 * published without subscribing to the capacity topics, so they enter the
 * proxies' gossip mesh through these links and reach every other proxy from
 * there; nothing else needs a standing connection (attestation challenges
 * and jobs connect on demand). A link that drops is replaced.
 *
 * libp2p dials the bootstrap peers once, at start. A node whose dial failed
 * (a loaded bootstrap node lets the handshake time out) or that later lost
 * every connection would hear of nobody again, so while the node has no
 * connection at all the bootstrap peers are dialled again, with a backoff.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import { P2P_MULTIADDR_CODE } from './constants.js'
import type { CocoonLibp2p } from './node.js'
import type { PeerDirectory, PeerRecord } from './peer-directory.js'
import type { Role } from './protos/node.js'
import type { Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const DIAL_TIMEOUT_MS = 10_000
/** Bursts of directory updates and disconnects are handled in one pass. */
const MAINTAIN_DELAY_MS = 200
/** A peer that could not be dialled is not tried again for this long. */
const FAILED_DIAL_BACKOFF_MS = 30_000
/** How often the links are checked without an event (a node with no connection gets none). */
const CHECK_INTERVAL_MS = 5_000
/** Redials of the bootstrap peers while isolated: the first wait, doubling per failure up to the max. */
const REDIAL_BACKOFF_MS = 2_000
const REDIAL_BACKOFF_MAX_MS = 60_000

export interface PeerLinksInit {
  /** The role of the peers to link to. */
  role: Role
  /** How many to keep linked. */
  target: number
  log: Logger
  /** Bootstrap multiaddrs (with /p2p/), dialled again while this node has no connection. */
  bootstrap?: string[]
  /** Period of the check that runs without events (tests shorten it). */
  checkIntervalMs?: number
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
  private readonly failedAt = new Map<string, number>()
  private readonly bootstrap: Multiaddr[]
  private readonly checkIntervalMs: number
  private redialing = false
  private redialBackoffMs = REDIAL_BACKOFF_MS
  private nextRedialAtMs = 0
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
    this.bootstrap = (init.bootstrap ?? []).flatMap(a => {
      try { return [multiaddr(a)] } catch { return [] }
    }).filter(ma => ma.getComponents().some(c => c.code === P2P_MULTIADDR_CODE))
  }

  start (): void {
    this.running = true
    this.directory.addEventListener('peer:updated', this.onUpdate)
    this.node.addEventListener('peer:disconnect', this.onDisconnect)
    this.checkTimer = setInterval(() => {
      this.redialIfIsolated()
      this.maintain()
    }, this.checkIntervalMs)
    this.checkTimer.unref?.()
    this.maintain()
  }

  stop (): void {
    this.running = false
    clearInterval(this.checkTimer)
    clearTimeout(this.pending)
    this.pending = undefined
    this.directory.removeEventListener('peer:updated', this.onUpdate)
    this.node.removeEventListener('peer:disconnect', this.onDisconnect)
  }

  /** Peers of the role this node is connected to now. */
  linked (): string[] {
    const peers = new Set<string>()
    for (const c of this.node.getConnections()) {
      const id = c.remotePeer.toString()
      if (this.directory.get(id)?.role === this.role) peers.add(id)
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
      this.link(record)
      missing--
    }
  }

  /**
   * With no connection at all, dials the bootstrap peers (the first that
   * answers is enough: presence and the DHT lead on from there). Failed
   * rounds back off, doubling up to REDIAL_BACKOFF_MAX_MS, with jitter so
   * nodes isolated together do not retry together.
   */
  private redialIfIsolated (): void {
    if (!this.running || this.redialing || this.bootstrap.length === 0) return
    if (this.node.getConnections().length > 0) {
      this.redialBackoffMs = REDIAL_BACKOFF_MS
      return
    }
    const nowMs = Date.now()
    if (nowMs < this.nextRedialAtMs) return
    this.redialing = true
    this.log('no connections: dialling the bootstrap peers again')
    const dials = this.bootstrap.map(async ma => this.node.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) }))
    Promise.any(dials)
      .then(() => {
        this.redialBackoffMs = REDIAL_BACKOFF_MS
        this.nextRedialAtMs = 0
        this.log('reconnected to a bootstrap peer')
      }, () => {
        this.nextRedialAtMs = Date.now() + Math.round(this.redialBackoffMs * (0.5 + this.random()))
        this.redialBackoffMs = Math.min(REDIAL_BACKOFF_MAX_MS, this.redialBackoffMs * 2)
        this.log('could not reach any bootstrap peer')
      })
      .finally(() => { this.redialing = false })
  }

  private link (record: PeerRecord): void {
    const peer = peerIdFromString(record.peerId)
    const addrs = record.addrs.flatMap(a => {
      try { return [multiaddr(a).encapsulate(`/p2p/${record.peerId}`)] } catch { return [] }
    })
    this.dialing.add(record.peerId)
    this.node.dial(addrs.length > 0 ? addrs : peer, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .then(() => {
        this.failedAt.delete(record.peerId)
        this.log('linked to %s', record.peerId)
      })
      .catch(err => {
        this.failedAt.set(record.peerId, Date.now())
        this.log('could not link to %s - %s', record.peerId, (err as Error).message)
      })
      .finally(() => {
        this.dialing.delete(record.peerId)
        // a failed dial leaves a gap to fill with another peer
        this.maintainSoon()
      })
  }
}

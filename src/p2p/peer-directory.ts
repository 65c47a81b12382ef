/**
 * What this node knows about other Cocoon peers: role, network, version and
 * addresses, learned from presence gossip or the /cocoon/info protocol.
 * Pure bookkeeping, no I/O.
 */
import { TypedEventEmitter } from 'main-event'
import { PRESENCE_EXPIRY_INTERVALS, PRESENCE_EXPIRY_MS, PRESENCE_INTERVAL_MS } from './constants.js'
import { Role } from '../gen/node.pb.js'

export { Role }

/**
 * The roles that publish presence heartbeats: the peers others must find.
 * Workers reach proxies through capacity announcements (which carry their
 * addresses) and clients need to be found by nobody; both only listen, so
 * presence costs each node about one message per publisher per interval
 * instead of one per peer in the swarm.
 */
export const PRESENCE_PUBLISHER_ROLES: readonly Role[] = [Role.BOOTSTRAP, Role.PROXY]

export interface PeerRecord {
  peerId: string
  role: Role
  network: string
  version: string
  addrs: string[]
  /** Local time the record was last refreshed, ms. */
  lastSeenMs: number
  /** Highest presence sequence number seen, 0 if none. */
  seq: bigint
  /** The peer's stated heartbeat interval, ms (the default when it did not say). */
  intervalMs?: number
  /** A proxy's stated count of the workers its registry lists. */
  workers?: number
  source: 'presence' | 'info'
}

export interface PeerDirectoryEvents {
  'peer:updated': CustomEvent<PeerRecord>
  'peer:expired': CustomEvent<string>
}

export class PeerDirectory extends TypedEventEmitter<PeerDirectoryEvents> {
  private readonly peers = new Map<string, PeerRecord>()
  private readonly now: () => number

  constructor (options: { now?: () => number } = {}) {
    super()
    this.now = options.now ?? Date.now
  }

  get (peerId: string): PeerRecord | undefined {
    return this.peers.get(peerId)
  }

  /** Highest presence sequence number seen from a peer (0 when none). */
  lastSeq (peerId: string): bigint {
    return this.peers.get(peerId)?.seq ?? 0n
  }

  upsert (record: Omit<PeerRecord, 'lastSeenMs'>): PeerRecord {
    const previous = this.peers.get(record.peerId)
    const next: PeerRecord = {
      ...record,
      seq: previous != null && previous.seq > record.seq ? previous.seq : record.seq,
      intervalMs: record.intervalMs ?? previous?.intervalMs,
      workers: record.workers ?? previous?.workers,
      lastSeenMs: this.now()
    }
    this.peers.set(record.peerId, next)
    this.safeDispatch('peer:updated', next)
    return next
  }

  /**
   * Drops records not refreshed within `maxAgeMs` or three of the peer's own
   * stated heartbeat intervals, whichever is longer, except `keep` (e.g.
   * connected peers).
   */
  expire (keep: (peerId: string) => boolean = () => false, maxAgeMs = PRESENCE_EXPIRY_MS): string[] {
    const nowMs = this.now()
    const expired: string[] = []
    for (const [id, record] of this.peers) {
      const ageLimit = Math.max(maxAgeMs, PRESENCE_EXPIRY_INTERVALS * (record.intervalMs ?? PRESENCE_INTERVAL_MS))
      if (record.lastSeenMs < nowMs - ageLimit && !keep(id)) {
        this.peers.delete(id)
        expired.push(id)
        this.safeDispatch('peer:expired', id)
      }
    }
    return expired
  }

  list (): PeerRecord[] {
    return [...this.peers.values()].sort((a, b) => a.peerId.localeCompare(b.peerId))
  }

  /**
   * How many workers the swarm has, at least: the median of what the proxies
   * heard from state in their presence or /cocoon/info (each lists the
   * workers whose capacity it receives), or the workers this directory itself
   * knows, whichever is larger. Workers send and take no presence, so a
   * worker learns the swarm's size from the proxies' info; a median, so one
   * proxy stating a huge number cannot slow every worker's heartbeat.
   */
  workersEstimate (): number {
    const stated: number[] = []
    let known = 0
    for (const record of this.peers.values()) {
      if (record.role === Role.WORKER) known++
      if (record.role === Role.PROXY && record.workers != null) stated.push(record.workers)
    }
    if (stated.length === 0) return known
    stated.sort((a, b) => a - b)
    return Math.max(known, stated[Math.floor(stated.length / 2)])
  }

  /** Peers of the roles that send presence heartbeats (bootstrap nodes and proxies). */
  publishers (): number {
    let n = 0
    for (const record of this.peers.values()) if (PRESENCE_PUBLISHER_ROLES.includes(record.role)) n++
    return n
  }

  countByRole (): Map<Role, number> {
    const counts = new Map<Role, number>()
    for (const record of this.peers.values()) {
      counts.set(record.role, (counts.get(record.role) ?? 0) + 1)
    }
    return counts
  }

  get size (): number {
    return this.peers.size
  }

  // a listener that throws must not break gossip validation
  private safeDispatch<K extends keyof PeerDirectoryEvents> (type: K, detail: PeerDirectoryEvents[K]['detail']): void {
    try {
      this.dispatchEvent(new CustomEvent(type, { detail }))
    } catch {}
  }
}

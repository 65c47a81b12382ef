/**
 * What this node knows about other Cocoon peers: role, network, version and
 * addresses, learned from presence gossip or the /cocoon/info protocol.
 * Pure bookkeeping, no I/O.
 */
import { TypedEventEmitter } from 'main-event'
import { PRESENCE_EXPIRY_INTERVALS, PRESENCE_EXPIRY_MS, PRESENCE_INTERVAL_MS, PRESENCE_PER_PEER_MS } from './constants.js'
import { Role } from './protos/node.js'

export { Role }

/** Stated heartbeat intervals needed before they say more about the swarm's size than the directory does. */
const SIZE_ESTIMATE_MIN_SAMPLES = 3

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
   * How many peers the swarm has, at least. A newcomer's directory fills
   * slowly (each peer heartbeats once per interval, and that interval grows
   * with the swarm), but each heartbeat states its interval, which is
   * PRESENCE_PER_PEER_MS per peer its sender knows once past the base
   * interval: the median of what the known peers imply, when at least
   * SIZE_ESTIMATE_MIN_SAMPLES stated one, or this directory's own size,
   * whichever is larger. A median, so a few peers stating long intervals
   * cannot inflate it.
   */
  sizeEstimate (): number {
    const implied: number[] = []
    for (const record of this.peers.values()) {
      if (record.source !== 'presence' || record.intervalMs == null) continue
      implied.push(record.intervalMs > PRESENCE_INTERVAL_MS ? Math.floor(record.intervalMs / PRESENCE_PER_PEER_MS) : 0)
    }
    if (implied.length < SIZE_ESTIMATE_MIN_SAMPLES) return this.peers.size
    implied.sort((a, b) => a - b)
    return Math.max(this.peers.size, implied[Math.floor(implied.length / 2)])
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

/**
 * What a proxy does when the last connection a registered worker had opened
 * to it (its link) closes. Connections come and go (idle ones are closed, the
 * connection manager prunes), so a drop alone says little: the worker is
 * dialled back, and marked down only if it refuses (a crashed worker refuses
 * at once). A dial that only times out says this side or the network is slow,
 * not that the worker is gone: it stays listed (its entry expires if it falls
 * silent, and a job that cannot reach it fails over). Marking down on
 * timeouts made a loaded proxy drop most of a 1 000-worker swarm.
 *
 * Only workers that link to this proxy are dialled back: those whose own
 * announcements reach it straight from them (`heardDirect`). A worker's other
 * connections here (a DHT provide, a query) are closed by the worker once
 * idle; dialling back after each made a 1 000-node swarm open a burst of
 * connections five minutes after its workers joined, on a machine that had no
 * CPU to spare. A worker that does not link here and falls silent expires
 * with its entry.
 */
import type { Logger, PeerId } from '@libp2p/interface'

/** How long the dial back may take before the worker is given the benefit of the doubt. */
export const DOWN_CHECK_DIAL_MS = 3_000

export type DownCheckOutcome = 'reachable' | 'timed-out' | 'refused' | 'skipped'

export interface DownCheckInit {
  dial: (peer: PeerId, options: { signal: AbortSignal }) => Promise<unknown>
  /** Whether the worker is listed and up (only those are checked). */
  listedUp: (peerId: string) => boolean
  markDown: (peerId: string) => void
  log: Logger
  timeoutMs?: number
}

/** Workers heard directly are pruned to the listed ones whenever the set grows past this (and twice its last size). */
const DIRECT_PRUNE_AT = 1_024

export class DownCheck {
  private readonly init: DownCheckInit
  private readonly checking = new Set<string>()
  /** Workers whose own announcements came straight from them: their links to this proxy. */
  private readonly direct = new Set<string>()
  private pruneAt = DIRECT_PRUNE_AT

  constructor (init: DownCheckInit) {
    this.init = init
  }

  /** Workers recorded as linking here (listed or not yet pruned). */
  get directCount (): number {
    return this.direct.size
  }

  /** The worker's own announcement arrived from the worker itself: it links to this proxy. */
  heardDirect (peerId: string): void {
    this.direct.add(peerId)
    if (this.direct.size < this.pruneAt) return
    for (const id of this.direct) if (!this.init.listedUp(id)) this.direct.delete(id)
    this.pruneAt = Math.max(DIRECT_PRUNE_AT, this.direct.size * 2)
  }

  /** Dials the worker back if it links here; one check per worker at a time. */
  async check (peer: PeerId): Promise<DownCheckOutcome> {
    const id = peer.toString()
    if (!this.direct.has(id) || !this.init.listedUp(id) || this.checking.has(id)) return 'skipped'
    this.checking.add(id)
    const timeoutMs = this.init.timeoutMs ?? DOWN_CHECK_DIAL_MS
    const signal = AbortSignal.timeout(timeoutMs)
    try {
      await this.init.dial(peer, { signal })
      this.init.log('worker %s still reachable after a dropped connection', id)
      return 'reachable'
    } catch (err) {
      if (signal.aborted) {
        this.init.log('worker %s did not answer a dial within %d ms; kept listed - %s', id, timeoutMs, (err as Error).message)
        return 'timed-out'
      }
      this.init.markDown(id)
      return 'refused'
    } finally {
      this.checking.delete(id)
    }
  }
}

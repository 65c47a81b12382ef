/**
 * A job's lifecycle at one hop, the same for every hop (client → proxy,
 * proxy → worker) and for both ends of it:
 *
 * ```
 *   setup ──► routed ──► streaming ──► final ──► closed
 *     │        ▲   │
 *     │        └───┘  failover: another worker, before the first chunk
 *     └─────────────► streaming   (the worker's hop has no routing)
 *
 *   any state before final ──► failed | cancelled
 * ```
 *
 * - **setup**: the header, and between client and proxy the offer and the
 *   sealed body, are exchanged; nothing is owed.
 * - **routed**: the proxy named the worker (client ↔ proxy only); it may
 *   name another one while no chunk has gone out.
 * - **streaming**: sealed chunks flow down, payments up; a chunk leaves only
 *   within the payer's credit.
 * - **final**: the worker's signed result went out (or arrived and checked
 *   out); the payer's settling payment is awaited, bounded.
 * - **closed**: both sides are done; a late countersignature may still land.
 * - **failed** / **cancelled**: an error frame was answered (or read), or the
 *   requester cancelled (a JobCancel, its close, a reset) and the stream was
 *   reset.
 */
import { CocoonError } from '../errors.js'

export type JobState = 'setup' | 'routed' | 'streaming' | 'final' | 'closed' | 'failed' | 'cancelled'

const NEXT: Record<JobState, readonly JobState[]> = {
  setup: ['routed', 'streaming', 'final', 'failed', 'cancelled'],
  routed: ['routed', 'streaming', 'final', 'failed', 'cancelled'],
  streaming: ['final', 'failed', 'cancelled'],
  final: ['closed'],
  closed: [],
  failed: [],
  cancelled: []
}

/** A transition the lifecycle does not allow: a bug in a hop, never a peer's doing. */
export class JobStateError extends CocoonError {
  constructor (from: JobState, to: JobState) {
    super('ERR_JOB_STATE', `a job cannot go from ${from} to ${to}`)
  }
}

/** One job's state at one hop; every hop moves it through the transitions above and nothing else. */
export class JobLifecycle {
  private current: JobState = 'setup'

  get state (): JobState {
    return this.current
  }

  /** The job has ended one way or another. */
  get ended (): boolean {
    return NEXT[this.current].length === 0
  }

  /** Whether the final result went out (or came in): a close from the requester is then no cancel. */
  get finished (): boolean {
    return this.current === 'final' || this.current === 'closed'
  }

  can (next: JobState): boolean {
    return NEXT[this.current].includes(next)
  }

  to (next: JobState): void {
    if (!this.can(next)) throw new JobStateError(this.current, next)
    this.current = next
  }

  /** Moves to `next` where allowed; false (and no change) where the job is already past it. */
  tryTo (next: JobState): boolean {
    if (!this.can(next)) return false
    this.current = next
    return true
  }
}

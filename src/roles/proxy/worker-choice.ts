/**
 * Which workers a job goes to, and the line it waits in when all of them
 * are busy. A job for a model every worker of which is full waits in a
 * bounded first-in-first-out queue (`proxy.queueDepth`, `proxy.queueWaitMs`)
 * and is routed as soon as a slot frees: one of this proxy's jobs ends, or a
 * worker announces a free slot. Only a full queue or a wait past its limit
 * is refused (OVERLOADED with a retry hint, 429 at the client's API).
 *
 * The proxy never routes to a worker it knows to be full: a worker's busy
 * slots are the most of what it announced and this proxy's own jobs there,
 * and a job leaving the queue reserves its first worker's slot until its
 * own attempt counts it, so the next job in line does not take the same one.
 */
import { ErrorCode } from '../../gen/framing.pb.js'
import { ProtocolError } from '../../p2p/framing.js'
import { AdmissionQueue, QueueFullError } from '../../ops/admission-queue.js'
import { removeCommission } from '../../settlement/pricing.js'
import { rankWorkers } from './job-router.js'
import type { RankedWorker, RouteDecision } from './job-router.js'
import type { WorkerRegistry } from './worker-registry.js'
import type { WorkerLookup } from './worker-lookup.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { JobHeader } from '../../gen/job.pb.js'
import type { PayerChannel } from '../../settlement/channels.js'
import type { Logger } from '@libp2p/interface'

export interface WorkerChoiceInit {
  registry: WorkerRegistry
  lookup: WorkerLookup
  /** How long a job for an unknown model may wait on the DHT fallback. */
  lookupWaitMs?: number
  /** Jobs that may wait for a free worker, and for how long at most (default 256, 30 s). */
  queue?: { depth: number, maxWaitMs: number }
  payments?: {
    commissionBp: number
    payerFor(worker: string, signal: AbortSignal): Promise<PayerChannel>
    payableWorkers?(): Set<string>
  }
  metrics?: NodeMetrics
  log: Logger
}

/** The workers a job may go to, best first; `release` hands back the slot reserved on the first. */
export interface Choice {
  workers: RankedWorker[]
  release: () => void
}

export const DEFAULT_PROXY_QUEUE = { depth: 256, maxWaitMs: 30_000 }
const DEFAULT_LOOKUP_WAIT_MS = 2_000
/** Channels to workers opened in the background at once, and how long one may take. */
const BACKGROUND_OPENS = 2
const BACKGROUND_OPEN_TIMEOUT_MS = 60_000

export class WorkerChoice {
  /** This proxy's jobs (and reservations) per worker. */
  readonly byWorker = new Map<string, number>()
  private readonly init: WorkerChoiceInit
  private readonly queue: AdmissionQueue
  /** Workers a channel is being opened to in the background. */
  private readonly opening = new Set<string>()

  constructor (init: WorkerChoiceInit) {
    this.init = init
    const q = init.queue ?? DEFAULT_PROXY_QUEUE
    this.queue = new AdmissionQueue({
      depth: q.depth,
      maxWaitMs: q.maxWaitMs,
      what: 'jobs',
      onWait: init.metrics?.observeQueue('proxy', () => this.queue.length)
    })
  }

  /** Jobs waiting for a free worker now. */
  get queued (): number {
    return this.queue.length
  }

  /**
   * Ranks the workers for a job; when every one is busy, waits in line
   * (never past `deadlineAtMs`) for a slot. Throws ProtocolError with the
   * code to answer (MODEL_UNKNOWN, PRICE_TOO_LOW, OVERLOADED for a full
   * queue or an expired wait).
   */
  async choose (header: JobHeader, signal: AbortSignal, deadlineAtMs: number): Promise<Choice> {
    // the client's cap is on what it pays: the worker's price plus the commission
    const bp = this.init.payments?.commissionBp ?? 0
    const cap = { promptPerM: removeCommission(header.maxPricePromptPerM, bp), completionPerM: removeCommission(header.maxPriceCompletionPerM, bp) }
    const inFlight = (peerId: string): number => this.byWorker.get(peerId) ?? 0
    const open = this.init.payments?.payableWorkers?.()
    const payable = (peerId: string): boolean => open?.has(peerId) ?? true
    const rank = (): RouteDecision => rankWorkers(header.model, this.init.registry.offersFor(header.model), cap, inFlight, Math.random, payable)
    // the first worker's slot is held the moment it is chosen: the next job in line (admitted in
    // the same turn of the event loop) must already see it taken
    const route = (): RouteDecision => {
      const d = rank()
      if (d.ok) this.started(d.workers[0].entry.peerId)
      return d
    }
    // whoever waits already goes first: while anyone does, a newcomer is only ranked (to learn whether
    // the model is known and affordable), not given a slot, and joins the line
    const now = (): RouteDecision => this.queue.length > 0 ? rank() : route()
    let decision = now()
    if (!decision.ok && decision.code === 'model_unknown') {
      const wait = AbortSignal.any([signal, AbortSignal.timeout(this.init.lookupWaitMs ?? DEFAULT_LOOKUP_WAIT_MS)])
      await this.init.lookup.find(header.model, { signal: wait }).catch(() => undefined)
      decision = now()
    }
    const holdsSlot = decision.ok && this.queue.length === 0
    if (!holdsSlot && (decision.ok || decision.code === 'no_capacity')) {
      const waitMs = Math.max(0, deadlineAtMs - performance.now())
      decision = await this.queue.admit(() => {
        const d = route()
        return !d.ok && d.code === 'no_capacity' ? undefined : d
      }, signal, waitMs).catch((err: unknown) => {
        if (err instanceof QueueFullError) throw new ProtocolError(ErrorCode.OVERLOADED, `every worker for ${header.model} is busy and ${err.message}`, err.retryAfterMs)
        throw err
      })
    }
    if (!decision.ok) {
      const code = decision.code === 'model_unknown' ? ErrorCode.MODEL_UNKNOWN : decision.code === 'price_too_low' ? ErrorCode.PRICE_TOO_LOW : ErrorCode.NO_CAPACITY
      throw new ProtocolError(code, decision.message, decision.code === 'no_capacity' ? 1_000 : 0)
    }
    this.prepareChannels(decision.workers, payable)
    const first = decision.workers[0].entry.peerId
    let holding = true
    return {
      workers: decision.workers,
      release: () => {
        if (!holding) return
        holding = false
        this.ended(first)
      }
    }
  }

  /** A job (or a reservation) on `worker` started. */
  started (worker: string): void {
    bump(this.byWorker, worker, +1)
  }

  /** A job (or a reservation) on `worker` ended: the next job in line may take its slot. */
  ended (worker: string): void {
    bump(this.byWorker, worker, -1)
    this.queue.wake()
  }

  /** A worker announced new capacity: the next job in line may fit now. */
  capacityChanged (): void {
    this.queue.wake()
  }

  /**
   * Traffic reached workers we cannot pay yet: open a channel to the best of
   * them in the background (a few at a time), so the set of workers we can
   * use without waiting grows with the traffic, and no job waits for it.
   */
  private prepareChannels (ranked: RankedWorker[], payable: (peerId: string) => boolean): void {
    const payments = this.init.payments
    if (payments == null || this.opening.size >= BACKGROUND_OPENS) return
    const next = ranked.find(r => !payable(r.entry.peerId) && !this.opening.has(r.entry.peerId))
    if (next == null) return
    const worker = next.entry.peerId
    this.opening.add(worker)
    payments.payerFor(worker, AbortSignal.timeout(BACKGROUND_OPEN_TIMEOUT_MS))
      .catch(err => { this.init.log('no channel to worker %s yet - %s', worker, (err as Error).message) })
      .finally(() => { this.opening.delete(worker) })
  }
}

function bump (map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta
  if (next <= 0) map.delete(key)
  else map.set(key, next)
}

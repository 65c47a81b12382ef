/**
 * The outbound hop: the requesting side of a job stream (the client to its
 * proxy, the proxy to a worker), once the role has opened the stream and
 * sent the request. It reads what comes back, once for every role:
 *
 * - the worker the proxy routed to (client ↔ proxy): never a switch after
 *   the first chunk, and only one the role accepts;
 * - each sealed chunk: the role's `open` runs first (a chunk that does not
 *   open is never paid for), the claimed token count may only grow, and the
 *   payment it makes due goes up the stream before the chunk is handed on;
 * - the final result: the worker's signature, the job, the chunk count and
 *   the usage are checked, and the settling payment is sent;
 * - countersignatures of our payments, kept by the payer (also after the
 *   end, until the other side closes).
 *
 * Aborting the job's signal sends a JobCancel and resets the stream, so the
 * cancel reaches the next hop within JOB_CANCEL_GRACE_MS. Every read has
 * the job's remaining time as its deadline.
 */
import { InferenceError } from '../inference/types.js'
import { JOB_CANCEL_GRACE_MS } from '../p2p/constants.js'
import { JobUpstream } from '../gen/job.pb.js'
import { JobLifecycle } from './lifecycle.js'
import { SerialWriter } from './serial-writer.js'
import { usageFromWire, verifyResult } from './wire.js'
import type { InboundEvents } from './inbound.js'
import type { HopPayer, HopPayment } from './payments.js'
import type { Usage } from '../inference/types.js'
import type { FramedStream, MessageCodec } from '../p2p/framing.js'
import type { JobResult, JobRouted, SealedChunk, SignedResult } from '../gen/job.pb.js'

/** What comes back on a job stream: chunks, countersignatures, a routing notice, a final event. */
export interface OutboundEvents extends InboundEvents {
  routed?: JobRouted
  final?: unknown
}

export interface OutboundHopInit<E extends OutboundEvents> {
  framed: FramedStream
  /** The codec of the events that come back (JobEvent, WorkEvent). */
  events: MessageCodec<E>
  /** The worker's signed result in this protocol's final event. */
  resultOf: (event: E) => SignedResult | undefined
  /** What the other side is, for messages: "the proxy", "worker 12D3…". */
  upstream: string
  requestId: string
  /** The job's signal: aborting it cancels the hop. */
  signal: AbortSignal
  /** performance.now() by which the job must be over. */
  deadlineAtMs: number
  /** The worker, when known before the stream opens (proxy → worker). */
  worker?: string
  /** Who pays this hop, when known up front. */
  payer?: HopPayer
  /**
   * Pay for a chunk only once the consumer handed it on (a relay): it then
   * never pays for a chunk it could not deliver. By default a chunk is paid
   * for before the consumer sees it.
   */
  payAfterHandOn?: boolean
  /**
   * The proxy routed the job to `worker` (client ↔ proxy): throw to refuse
   * it; return who pays for it.
   */
  onRouted?: (worker: string) => HopPayer | undefined
}

export type OutboundEvent<T, E> =
  | { type: 'routed', worker: string, attempt: number }
  | { type: 'chunk', chunk: SealedChunk, tokens: number, opened: T }
  | { type: 'final', event: E, result: JobResult, usage: Usage, worker: string }

/** How long the countersignature of a job's last payment may take after the end. */
const COUNTERSIGN_WAIT_MS = 5_000

export class OutboundHop<E extends OutboundEvents> {
  readonly lifecycle = new JobLifecycle()
  private readonly init: OutboundHopInit<E>
  private readonly writer = new SerialWriter()
  private payerEnd: HopPayer | undefined
  private worker: string | undefined
  private chunkCount = 0
  private tokenCount = 0
  private closed = false
  private readonly onAbort: () => void

  constructor (init: OutboundHopInit<E>) {
    this.init = init
    this.payerEnd = init.payer
    this.worker = init.worker
    this.onAbort = () => { if (!this.lifecycle.finished) void cancelStream(init.framed, 'cancelled by the requester') }
    init.signal.addEventListener('abort', this.onAbort, { once: true })
  }

  get payer (): HopPayer | undefined {
    return this.payerEnd
  }

  /** Chunks received so far. */
  get chunks (): number {
    return this.chunkCount
  }

  /**
   * The stream's events until the checked final result. `open` turns a
   * sealed chunk into what the role hands on (the client opens it; the proxy
   * relays it as it is) and throws for one that does not open.
   */
  async * run<T> (open: (chunk: SealedChunk, worker: string) => T): AsyncGenerator<OutboundEvent<T, E>, void, undefined> {
    const { framed, events, signal, upstream } = this.init
    while (true) {
      const remainingMs = Math.max(1, Math.floor(this.init.deadlineAtMs - performance.now()))
      const event = await framed.read(events, { signal, deadlineMs: remainingMs })
      if (event.countersign != null) {
        this.payerEnd?.countersigned(event.countersign.seqno, event.countersign.payeeSignature)
        continue
      }
      if (event.routed != null) {
        if (this.init.onRouted == null) throw new InferenceError('worker_failed', `${upstream} sent a routing notice on a stream that takes none`)
        if (this.chunkCount > 0) throw new InferenceError('worker_failed', `${upstream} switched workers mid-stream`)
        this.payerEnd = this.init.onRouted(event.routed.worker)
        this.worker = event.routed.worker
        this.lifecycle.to('routed')
        yield { type: 'routed', worker: event.routed.worker, attempt: event.routed.attempt }
        continue
      }
      const worker = this.worker
      if (worker == null) throw new InferenceError('worker_failed', `${upstream} sent job data before naming the worker`)
      if (event.chunk != null) {
        // opened (authenticated) before anything is paid for it
        const opened = open(event.chunk, worker)
        if (event.chunk.tokens < this.tokenCount) throw new InferenceError('worker_failed', `${upstream}: the token count went back from ${this.tokenCount} to ${event.chunk.tokens}`)
        this.tokenCount = event.chunk.tokens
        this.chunkCount++
        this.lifecycle.tryTo('streaming')
        if (this.init.payAfterHandOn !== true) await this.pay(await this.payerEnd?.onTokens(this.tokenCount) ?? null)
        yield { type: 'chunk', chunk: event.chunk, tokens: this.tokenCount, opened }
        if (this.init.payAfterHandOn === true) await this.pay(await this.payerEnd?.onTokens(this.tokenCount) ?? null)
        continue
      }
      if (event.final == null) throw new InferenceError('worker_failed', `${upstream} sent an empty job event`)
      const result = await verifyResult(this.init.resultOf(event), worker, this.init.requestId)
      if (result.chunks !== this.chunkCount) throw new InferenceError('worker_failed', `worker ${worker} counted ${result.chunks} chunks but ${this.chunkCount} arrived: the stream was cut or altered`)
      const usage = usageFromWire(result.usage)
      if (usage.completionTokens < this.tokenCount) throw new InferenceError('worker_failed', `worker ${worker} signed ${usage.completionTokens} completion tokens after claiming ${this.tokenCount}`)
      await this.pay(await this.payerEnd?.onFinal(usage) ?? null)
      this.lifecycle.to('final')
      yield { type: 'final', event, result, usage, worker }
      return
    }
  }

  /**
   * After the final result: closes our side and keeps the countersignature
   * of the last payment when it arrives (in the background, bounded), so
   * both ends hold the same last both-signed state.
   */
  async close (): Promise<void> {
    const { framed } = this.init
    // from here on the stream ends on its own: dispose() leaves it alone
    this.closed = true
    await this.writer.run(async () => framed.close({ signal: AbortSignal.timeout(JOB_CANCEL_GRACE_MS * 10) })).catch(() => {})
    this.lifecycle.tryTo('closed')
    void this.collectCountersigns()
  }

  /** Ends the hop: a stream not closed after a final result is reset. Call in `finally`. */
  dispose (): void {
    this.init.signal.removeEventListener('abort', this.onAbort)
    if (!this.closed && this.init.framed.stream.status !== 'closed') this.init.framed.abort(new Error('job ended'))
  }

  private async pay (payment: HopPayment | null): Promise<void> {
    if (payment == null) return
    const { framed, signal } = this.init
    await this.writer.run(async () => framed.write(JobUpstream, { payment: { ...payment, payerSignature: new Uint8Array(payment.payerSignature), settles: payment.settles === true } }, { signal }))
  }

  private async collectCountersigns (): Promise<void> {
    const { framed, events } = this.init
    try {
      for await (const event of framed.messages(events, { deadlineMs: COUNTERSIGN_WAIT_MS })) {
        if (event.countersign != null) this.payerEnd?.countersigned(event.countersign.seqno, event.countersign.payeeSignature)
      }
    } catch {
      // a late or missing countersignature only leaves an older both-signed state (the payer re-sends it later)
    } finally {
      if (framed.stream.status !== 'closed') framed.abort(new Error('job ended'))
    }
  }
}

/** Tells the other side to stop, then resets the stream: it must stop within JOB_CANCEL_GRACE_MS either way. */
async function cancelStream (framed: FramedStream, reason: string): Promise<void> {
  try {
    await framed.write(JobUpstream, { cancel: { reason } }, { signal: AbortSignal.timeout(JOB_CANCEL_GRACE_MS) })
  } catch {
    // the reset below is what counts
  }
  framed.abort(new Error('cancelled'))
}

/**
 * `/cocoon/work/1.0.0` on a worker: takes a sealed job from a proxy, opens it
 * with the attested job key, runs it on the backend and streams the answer
 * back sealed chunk by chunk, ending with a result signed by the worker's
 * libp2p key (usage, chunk count, timings).
 *
 * While a job runs, the stream's read side is watched: a JobCancel, the
 * proxy closing its side, or a reset aborts generation at once. The job's
 * own deadline aborts it too. A full model answers OVERLOADED at once rather
 * than queueing behind running jobs: the proxy picks another worker.
 *
 * A paid job names the proxy's channel to this worker. Each sealed frame
 * carries the completion tokens streamed so far (sealed over, so the client
 * can hold everyone to it); the proxy pays as frames arrive, and a frame
 * leaves only while the proxy's unpaid credit stays within the window. A
 * proxy that stops paying gets PAYMENT_REQUIRED and the job stops.
 */
import { JOB_MAX_FRAME_BYTES, JOB_MAX_STREAMS_PER_CONNECTION, JOB_SETUP_DEADLINE_MS, WORK_PROTOCOL } from '../../p2p/constants.js'
import { errorCodeFor, FramedStream, ProtocolError } from '../../p2p/framing.js'
import { ErrorCode } from '../../gen/framing.pb.js'
import { WorkEvent, WorkRequest } from '../../gen/job.pb.js'
import { SealError } from '../../errors.js'
import { openRequest } from '../../tee/seal.js'
import { InboundHop } from '../../jobs/inbound.js'
import { checkHeader, contentTokens, headerAad, kindFromWire, sealContext, sha256, signResult, tokensAad, toProtocolError, usageToWire } from '../../jobs/wire.js'
import { InferenceError } from '../../inference/types.js'
import { jobChannel, JobPayee } from '../../settlement/job-payments.js'
import { DEFAULT_CACHED_BP, DEFAULT_REASONING_BP } from '../../settlement/pricing.js'
import type { ChannelManager } from '../../settlement/channel-manager.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { BackendEvent, InferenceBackend, InferenceChunk, Usage } from '../../inference/types.js'
import type { JobHeader } from '../../gen/job.pb.js'
import type { Connection, Logger, PrivateKey, Stream } from '@libp2p/interface'

export interface WorkServiceInit {
  backend: InferenceBackend
  jobKey: { privateKey: Uint8Array, publicKey: Uint8Array }
  /** The worker's libp2p key: signs job results. */
  signer: PrivateKey
  peerId: string
  models: WorkModel[]
  /** Set when this worker settles: paid jobs are checked and metered against the proxy's channel. */
  payments?: WorkPayments
  /** Jobs running for a model changed (free slots go out in the next announcement). */
  onRunning?: (model: string, jobs: number) => void
  metrics?: NodeMetrics
  log: Logger
}

export interface WorkModel {
  name: string
  maxConcurrent: number
  contextLength: number
  pricePromptPerM: bigint
  priceCompletionPerM: bigint
}

export interface WorkPayments {
  manager: ChannelManager
  /** Refuse jobs that name no channel. */
  required: boolean
  /** How long a frame waits for the payment that lets it out before the job stops. */
  paymentWaitMs: number
  /** After the final result: how long to wait for the payment that settles the job. */
  settleWaitMs: number
}

/** How one cancelled job stopped: for operators and for the tests that hold us to 100 ms. */
export interface CancelRecord {
  requestId: string
  /** Epoch ms the cancel reached this worker (frame, close or reset). */
  cancelledAtMs: number
  /** Epoch ms the backend stopped generating. */
  stoppedAtMs: number
  chunksSent: number
}

export interface WorkServiceStatus {
  running: Record<string, number>
  completed: number
  failed: number
  cancelled: number
  recentCancels: CancelRecord[]
}

interface Host {
  handle(protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: { maxInboundStreams?: number }): Promise<void>
  unhandle(protocol: string): Promise<void>
}

const RECENT_CANCELS = 16
/** At most this many chunks share one sealed frame. */
const MAX_CHUNKS_PER_FRAME = 64
const TURN = Symbol('turn')
/** Resolves after the I/O that is ready now has run: "the backend has nothing more at the moment". */
async function nextTurn (): Promise<typeof TURN> {
  return new Promise(resolve => { setImmediate(() => { resolve(TURN) }) })
}

export class WorkService {
  private readonly host: Host
  private readonly init: WorkServiceInit
  private readonly models: Map<string, WorkModel>
  private readonly running = new Map<string, number>()
  private readonly controllers = new Set<AbortController>()
  private readonly counts = { completed: 0, failed: 0, cancelled: 0, unpaid: 0 }
  private readonly recentCancels: CancelRecord[] = []

  constructor (host: Host, init: WorkServiceInit) {
    this.host = host
    this.init = init
    this.models = new Map(init.models.map(m => [m.name, m]))
  }

  async start (): Promise<void> {
    await this.host.handle(WORK_PROTOCOL, async (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: JOB_MAX_STREAMS_PER_CONNECTION
    })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(WORK_PROTOCOL).catch(() => {})
    for (const c of this.controllers) c.abort(new InferenceError('unavailable', 'the worker is shutting down'))
  }

  status (): WorkServiceStatus {
    return { running: Object.fromEntries(this.running), ...this.counts, recentCancels: [...this.recentCancels] }
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const framed = new FramedStream(stream, { protocol: WORK_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS })
    const startedMs = performance.now()
    let header: JobHeader | undefined
    let slot: string | undefined
    const controller = new AbortController()
    this.controllers.add(controller)
    let deadline: ReturnType<typeof setTimeout> | undefined
    let chunks = 0
    let events: AsyncIterator<BackendEvent> | undefined
    const hop = new InboundHop({
      framed,
      events: WorkEvent,
      controller,
      requester: 'proxy',
      onUnpaid: (what) => {
        this.counts.unpaid++
        this.init.log('job %s from %s: %s nanoTON delivered unpaid on %s (%s)', header?.requestId, connection.remotePeer, hop.payee?.unpaid, hop.payee?.channel,
          what === 'credit' ? 'the payment fell behind the credit window' : 'the job ended without its settlement')
      }
    })
    try {
      const request = await framed.read(WorkRequest, { signal: controller.signal })
      header = checkHeader(request.header, WORK_PROTOCOL)
      const model = this.models.get(header.model)
      if (model == null) throw new ProtocolError(ErrorCode.MODEL_UNKNOWN, `this worker does not serve ${header.model}`)
      const backend = this.init.backend.status()
      if (!backend.available) throw new ProtocolError(ErrorCode.UNAVAILABLE, `the backend is unavailable${backend.detail === '' ? '' : `: ${backend.detail}`}`, 1_000)
      if ((this.running.get(model.name) ?? 0) >= model.maxConcurrent) {
        throw new ProtocolError(ErrorCode.OVERLOADED, `all ${model.maxConcurrent} slots for ${model.name} are busy`, 500)
      }
      const sealed = request.sealed
      if (sealed == null || sealed.worker !== this.init.peerId) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the job is not sealed to this worker')
      hop.setPayee(this.payeeFor(header, connection.remotePeer.toString(), model))
      const { plaintext, sealer } = openRequest(this.init.jobKey.privateKey, this.init.jobKey.publicKey, sealed, sealContext(header.requestId), headerAad(header))
      const body = parseBody(plaintext)

      slot = model.name
      this.setRunning(slot, +1)
      deadline = setTimeout(() => { controller.abort(new InferenceError('timeout', `the job passed its ${header?.deadlineMs ?? 0} ms deadline on the worker`)) }, header.deadlineMs)
      hop.watch(header.deadlineMs + (this.init.payments?.settleWaitMs ?? 0) + 1_000)

      const queueMs = Math.round(performance.now() - startedMs)
      let firstChunkMs = 0
      let usage: Usage | undefined
      let finishReason = 'stop'
      const encoder = new TextEncoder()
      // Chunks the backend has ready at once travel in one sealed frame (a JSON
      // array): a burst costs one frame per hop instead of one per token, and
      // nothing waits, since a frame leaves as soon as the backend pauses.
      const pending: InferenceChunk[] = []
      let tokens = 0
      // A paid frame adds at most the tokens the payer's credit window covers,
      // so the unpaid credit never passes the window (the payee refuses more).
      const flush = async (): Promise<void> => {
        while (pending.length > 0) {
          const frame = takeFrame(pending, hop.payee?.frameTokens ?? Number.MAX_SAFE_INTEGER)
          const claimed = tokens + contentTokens(frame)
          await hop.sendChunk(claimed, () => {
            if (chunks === 0) firstChunkMs = Math.round(performance.now() - startedMs)
            const plaintext = encoder.encode(JSON.stringify(frame.length === 1 ? frame[0] : frame))
            return { seq: chunks, ciphertext: new Uint8Array(sealer.seal(chunks, plaintext, tokensAad(claimed))), tokens: claimed }
          })
          chunks++
          tokens = claimed
        }
      }
      events = this.init.backend.generate({
        kind: kindFromWire(header.kind),
        model: model.name,
        body,
        maxTokens: Math.min(header.maxTokens, model.contextLength),
        signal: controller.signal
      })[Symbol.asyncIterator]()
      let next = events.next()
      while (!controller.signal.aborted) {
        let result = await Promise.race([next, nextTurn()])
        if (result === TURN) {
          await flush()
          result = await next
        }
        if (result.done === true) break
        next = events.next()
        const event = result.value
        if (event.type === 'chunk') {
          pending.push(event.chunk)
          if (pending.length >= MAX_CHUNKS_PER_FRAME) await flush()
        } else {
          usage = event.usage
          finishReason = event.finishReason
        }
      }
      if (!controller.signal.aborted) await flush()
      if (controller.signal.aborted) throw controller.signal.reason
      // the backend is done: its slot is free for the next job while this one settles
      this.setRunning(slot, -1)
      slot = undefined
      if (usage == null) throw new InferenceError('worker_failed', 'the backend ended without usage')
      // never below what was claimed while streaming: what was paid for stays paid for
      if (usage.completionTokens < tokens) usage = { ...usage, completionTokens: tokens }
      hop.payee?.final(usage)
      const totalMs = Math.round(performance.now() - startedMs)
      const signed = await signResult(this.init.signer, {
        requestId: header.requestId,
        model: model.name,
        worker: this.init.peerId,
        usage: usageToWire(usage),
        finishReason,
        chunks,
        requestDigest: sha256(sealed.ciphertext),
        queueMs,
        firstChunkMs,
        totalMs
      })
      await hop.finish({ final: signed })
      this.counts.completed++
      this.init.metrics?.jobs.inc({ side: 'worker', model: model.name, result: 'ok' })
      this.init.metrics?.jobSeconds.observe({ side: 'worker', phase: 'first_chunk' }, firstChunkMs / 1000)
      this.init.metrics?.jobSeconds.observe({ side: 'worker', phase: 'total' }, totalMs / 1000)
      this.init.metrics?.jobTokens.inc({ side: 'worker', model: model.name, kind: 'prompt' }, usage.promptTokens)
      this.init.metrics?.jobTokens.inc({ side: 'worker', model: model.name, kind: 'completion' }, usage.completionTokens)
    } catch (err) {
      const answer = await hop.fail(err, toAnswer)
      if (answer == null) {
        this.counts.cancelled++
        this.recordCancel({ requestId: header?.requestId ?? '', cancelledAtMs: hop.cancelledAtMs, stoppedAtMs: Date.now(), chunksSent: chunks })
        this.init.metrics?.jobs.inc({ side: 'worker', model: header?.model ?? 'unknown', result: 'cancelled' })
        this.init.log('job %s cancelled by %p after %d chunks', header?.requestId, connection.remotePeer, chunks)
        return
      }
      this.counts.failed++
      this.init.metrics?.jobs.inc({ side: 'worker', model: header?.model ?? 'unknown', result: ErrorCode[answer.errorCode] ?? 'error' })
      this.init.metrics?.protocolErrors.inc({ protocol: WORK_PROTOCOL, code: answer.errorCode })
      this.init.log('job %s from %p failed with %s: %s', header?.requestId, connection.remotePeer, answer.errorCode, answer.message)
    } finally {
      clearTimeout(deadline)
      // a generation left suspended at a chunk (the job failed or was cancelled meanwhile) must end too, or its slot stays taken
      void events?.return?.(undefined)?.catch(() => {})
      this.controllers.delete(controller)
      if (!controller.signal.aborted) controller.abort()
      if (slot != null) this.setRunning(slot, -1)
    }
  }

  /** The job's payee end: its channel must be open and the proxy's own. */
  private payeeFor (header: JobHeader, proxy: string, model: WorkModel): JobPayee | undefined {
    const payments = this.init.payments
    const channel = jobChannel(payments?.manager, payments?.required ?? false, header.channel, proxy, 'worker')
    if (channel == null || payments == null) return undefined
    const price = { promptPerM: model.pricePromptPerM, completionPerM: model.priceCompletionPerM, cachedBp: DEFAULT_CACHED_BP, reasoningBp: DEFAULT_REASONING_BP }
    return new JobPayee(channel, price, payments.manager.terms().creditWindow, payments)
  }

  private setRunning (model: string, delta: number): void {
    const jobs = Math.max(0, (this.running.get(model) ?? 0) + delta)
    this.running.set(model, jobs)
    this.init.metrics?.jobsInFlight.set({ side: 'worker' }, [...this.running.values()].reduce((a, b) => a + b, 0))
    this.init.onRunning?.(model, jobs)
  }

  private recordCancel (record: CancelRecord): void {
    this.recentCancels.push(record)
    if (this.recentCancels.length > RECENT_CANCELS) this.recentCancels.shift()
  }
}

/** The sealed plaintext: the OpenAI request body as JSON. */
function parseBody (plaintext: Uint8Array): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plaintext))
  } catch {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the sealed request is not JSON')
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the sealed request is not a JSON object')
  return parsed as Record<string, unknown>
}

/** Any failure as the error frame to answer with; internals never leak. */
function toAnswer (err: unknown): ProtocolError {
  if (err instanceof ProtocolError) return err
  if (err instanceof InferenceError) return toProtocolError(err)
  if (err instanceof SealError) return new ProtocolError(ErrorCode.BAD_REQUEST, `the sealed request does not open with this worker's job key: ${err.message}`)
  const code = errorCodeFor(err)
  return new ProtocolError(code === ErrorCode.INTERNAL ? ErrorCode.WORKER_FAILED : code, code === ErrorCode.INTERNAL ? 'the worker failed' : (err as Error).message)
}

/** Takes from the front of `pending` the pieces of one frame: at most `maxTokens` tokens (always at least one piece). */
function takeFrame (pending: InferenceChunk[], maxTokens: number): InferenceChunk[] {
  let n = 0
  let tokens = 0
  while (n < pending.length) {
    const more = contentTokens([pending[n]])
    if (n > 0 && tokens + more > maxTokens) break
    tokens += more
    n++
  }
  return pending.splice(0, n)
}

/**
 * The proxy's side of inference: `/cocoon/job/1.0.0` from clients and
 * `/cocoon/models/1.0.0` for their model lists.
 *
 * A job: the client's header → the proxy ranks workers and offers up to two
 * with their epoch-bound evidence → the client seals the body to each → the
 * proxy opens `/cocoon/work` to the first and relays the sealed chunks and
 * the worker's signed result. If that worker fails before its first chunk,
 * the same job goes to the second; after the first chunk, the client gets a
 * clear error. The proxy only ever handles ciphertext.
 *
 * The client cancels with a JobCancel frame, by closing its side or by
 * resetting the stream; any of them resets the worker's stream at once.
 *
 * Paid jobs: the client names its channel to this proxy and pays as sealed
 * frames arrive, at the worker's price plus this proxy's commission; the
 * proxy pays the worker on its own channel at the worker's price. A frame
 * goes on to the client only while the client's unpaid credit stays within
 * the window; a client that stops paying gets PAYMENT_REQUIRED and the
 * worker is stopped, so the proxy loses at most about one window.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import {
  JOB_HOP_MARGIN_MS, JOB_MAX_CANDIDATES, JOB_MAX_FRAME_BYTES, JOB_MAX_STREAMS_PER_CONNECTION,
  JOB_PROTOCOL, JOB_SETUP_DEADLINE_MS, MODELS_MAX_FRAME_BYTES, MODELS_PROTOCOL, WORK_PROTOCOL
} from '../../p2p/constants.js'
import { errorCodeFor, FramedStream, handleRequests, ProtocolError } from '../../p2p/framing.js'
import { ErrorCode } from '../../gen/framing.pb.js'
import { JobBody, JobEvent, JobOffer, JobRequest, ModelsRequest, ModelsResponse, WorkEvent, WorkRequest } from '../../gen/job.pb.js'
import { RemoteError } from '../../errors.js'
import { InboundHop } from '../../jobs/inbound.js'
import { OutboundHop } from '../../jobs/outbound.js'
import { checkHeader, toInferenceError, toProtocolError } from '../../jobs/wire.js'
import { InferenceError } from '../../inference/types.js'
import { ChannelError } from '../../errors.js'
import { jobChannel, JobPayee, JobPayer } from '../../settlement/job-payments.js'
import { addCommission, withCommission } from '../../settlement/pricing.js'
import type { ChannelManager } from '../../settlement/channel-manager.js'
import type { PayerChannel } from '../../settlement/channels.js'
import type { ModelPrice } from '../../settlement/pricing.js'
import { offerCandidates, workerPrice } from './job-offer.js'
import { WorkerChoice } from './worker-choice.js'
import type { Choice } from './worker-choice.js'
import type { RankedWorker } from './job-router.js'
import type { WorkerEvidence } from './worker-evidence.js'
import type { WorkerRegistry } from './worker-registry.js'
import type { WorkerLookup } from './worker-lookup.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { JobCost, JobHeader, ModelInfo, SealedRequest } from '../../gen/job.pb.js'
import type { Connection, Logger, Stream } from '@libp2p/interface'

export interface ProxyJobServiceInit {
  registry: WorkerRegistry
  lookup: WorkerLookup
  evidence: WorkerEvidence
  maxJobs: number
  maxJobsPerClient: number
  /** How long a job for an unknown model may wait on the DHT fallback. */
  lookupWaitMs?: number
  /** Jobs that may wait for a free worker, and for how long at most. */
  queue?: { depth: number, maxWaitMs: number }
  /** Set when this proxy settles: clients pay it, it pays workers. */
  payments?: ProxyPayments
  metrics?: NodeMetrics
  log: Logger
}

export interface ProxyPayments {
  manager: ChannelManager
  /** Refuse jobs that name no channel. */
  required: boolean
  /** Added to workers' prices for clients, in basis points. */
  commissionBp: number
  /** The channel this proxy pays `worker` through, opened on first need. */
  payerFor(worker: string, signal: AbortSignal): Promise<PayerChannel>
  /** Workers with a channel open now (a job to them need not wait for one). */
  payableWorkers?(): Set<string>
  paymentWaitMs: number
  settleWaitMs: number
  /** How long setting up payment to a worker may hold a job before the next worker takes it (default 10 s). */
  setupWaitMs?: number
}

export interface ProxyJobStatus {
  inFlight: number
  byClient: Record<string, number>
  byWorker: Record<string, number>
  /** Jobs waiting for a free worker. */
  queued: number
  relayed: number
  failed: number
  cancelled: number
  retried: number
}

/** How long setting up payment to a worker (terms, a channel) may hold a job before it goes to the next worker. */
const PAY_SETUP_DEADLINE_MS = 10_000
/** Worker errors after which the proxy tries the next candidate (before the first chunk). */
const RETRYABLE = new Set<string>([
  ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE, ErrorCode.WORKER_FAILED, ErrorCode.INTERNAL,
  ErrorCode.MODEL_UNKNOWN, ErrorCode.UNKNOWN, ErrorCode.UNSUPPORTED
])

export class ProxyJobService {
  private readonly node: CocoonLibp2p
  private readonly init: ProxyJobServiceInit
  private readonly byClient = new Map<string, number>()
  private readonly controllers = new Set<AbortController>()
  private inFlight = 0
  private readonly counts = { relayed: 0, failed: 0, cancelled: 0, retried: 0, unpaid: 0 }
  private readonly choice: WorkerChoice

  constructor (node: CocoonLibp2p, init: ProxyJobServiceInit) {
    this.node = node
    this.init = init
    this.choice = new WorkerChoice(init)
  }

  /** A worker announced new capacity: a job waiting for a free worker may fit now. */
  capacityChanged (): void {
    this.choice.capacityChanged()
  }

  async start (): Promise<void> {
    await this.node.handle(JOB_PROTOCOL, async (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: JOB_MAX_STREAMS_PER_CONNECTION
    })
    await handleRequests(this.node, {
      protocol: MODELS_PROTOCOL,
      maxFrameBytes: MODELS_MAX_FRAME_BYTES,
      request: ModelsRequest,
      response: ModelsResponse,
      log: this.init.log,
      onError: (code) => { this.init.metrics?.protocolErrors.inc({ protocol: MODELS_PROTOCOL, code }) },
      handler: async () => ({ models: this.catalog() })
    })
  }

  async stop (): Promise<void> {
    await this.node.unhandle(JOB_PROTOCOL).catch(() => {})
    await this.node.unhandle(MODELS_PROTOCOL).catch(() => {})
    for (const c of this.controllers) c.abort(new InferenceError('unavailable', 'the proxy is shutting down'))
  }

  status (): ProxyJobStatus {
    return { inFlight: this.inFlight, byClient: Object.fromEntries(this.byClient), byWorker: Object.fromEntries(this.choice.byWorker), queued: this.choice.queued, ...this.counts }
  }

  /** Models the registry can route now, for /cocoon/models, at the prices clients pay. */
  catalog (): ModelInfo[] {
    const bp = this.init.payments?.commissionBp ?? 0
    const up = (p: bigint): bigint => addCommission(p, bp)
    return this.init.registry.models().map(({ model, ...m }) => ({
      name: model,
      ...m,
      minPromptPerM: up(m.minPromptPerM),
      maxPromptPerM: up(m.maxPromptPerM),
      minCompletionPerM: up(m.minCompletionPerM),
      maxCompletionPerM: up(m.maxCompletionPerM),
      commissionBp: bp
    }))
  }

  /** What clients pay for a worker's price. */
  private clientPrice (worker: ModelPrice): ModelPrice {
    return withCommission(worker, this.init.payments?.commissionBp ?? 0)
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const client = connection.remotePeer.toString()
    const framed = new FramedStream(stream, { protocol: JOB_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS })
    const controller = new AbortController()
    const startedMs = performance.now()
    let header: JobHeader | undefined
    let admitted = false
    let choice: Choice | undefined
    this.controllers.add(controller)
    const hop: InboundHop<JobEvent> = new InboundHop({
      framed,
      events: JobEvent,
      controller,
      requester: 'client',
      onUnpaid: (what) => {
        this.counts.unpaid++
        this.init.log('job %s from %s: %s nanoTON delivered unpaid on %s (%s)', header?.requestId, connection.remotePeer, hop.payee?.unpaid, hop.payee?.channel,
          what === 'credit' ? 'the payment fell behind the credit window' : 'the job ended without its settlement')
      }
    })
    try {
      const request = await framed.read(JobRequest, { signal: controller.signal })
      header = checkHeader(request.header, JOB_PROTOCOL)
      const deadlineAtMs = startedMs + header.deadlineMs
      if (this.inFlight >= this.init.maxJobs) throw new ProtocolError(ErrorCode.OVERLOADED, `the proxy is running its maximum of ${this.init.maxJobs} jobs`, 1_000)
      if ((this.byClient.get(client) ?? 0) >= this.init.maxJobsPerClient) {
        throw new ProtocolError(ErrorCode.OVERLOADED, `at most ${this.init.maxJobsPerClient} jobs at once per client`, 500)
      }
      admitted = true
      this.admit(client, +1)
      const clientChannel = this.clientChannel(header, client)
      hop.setPaid(clientChannel != null)

      choice = await this.choice.choose(header, controller.signal, deadlineAtMs - JOB_HOP_MARGIN_MS)
      const wanted = Math.max(1, Math.min(request.candidates, JOB_MAX_CANDIDATES))
      const candidates = await offerCandidates(choice.workers, wanted, { evidence: this.init.evidence, clientPrice: (p) => this.clientPrice(p), log: this.init.log })
      if (candidates.length === 0) throw new ProtocolError(ErrorCode.NO_CAPACITY, `no worker for ${header.model} could present evidence; retry shortly`, 1_000)
      await framed.write(JobOffer, { candidates: candidates.map(c => c.wire) }, { signal: controller.signal })

      const body = await framed.read(JobBody, { signal: controller.signal })
      const sealedFor = new Map<string, SealedRequest>()
      for (const s of body.sealed) {
        if (candidates.some(c => c.wire.peerId === s.worker)) sealedFor.set(s.worker, s)
      }
      const attempts = candidates.filter(c => sealedFor.has(c.wire.peerId))
      if (attempts.length === 0) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the job body is sealed to none of the offered workers')

      // from here on, the client's side carries payments and a cancel (or its close/reset)
      hop.watch(Math.max(1, deadlineAtMs - performance.now()) + (this.init.payments?.settleWaitMs ?? 0) + 1_000)
      await this.relay({ hop, header, deadlineAtMs, controller, startedMs, clientChannel, reserved: choice }, attempts.map(a => ({ ranked: a.ranked, sealed: sealedFor.get(a.wire.peerId) as SealedRequest })))
    } catch (err) {
      const answer = await hop.fail(err, toAnswer)
      if (answer == null) {
        this.counts.cancelled++
        this.init.metrics?.jobs.inc({ side: 'proxy', model: header?.model ?? 'unknown', result: 'cancelled' })
        return
      }
      this.counts.failed++
      this.init.metrics?.jobs.inc({ side: 'proxy', model: header?.model ?? 'unknown', result: ErrorCode[answer.errorCode] ?? 'error' })
      this.init.metrics?.protocolErrors.inc({ protocol: JOB_PROTOCOL, code: answer.errorCode })
      this.init.log('job %s from %p failed with %s: %s', header?.requestId, connection.remotePeer, answer.errorCode, answer.message)
    } finally {
      this.controllers.delete(controller)
      if (!controller.signal.aborted) controller.abort()
      if (admitted) this.admit(client, -1)
      choice?.release()
    }
  }

  /** The client's open channel to this proxy that the job names, checked. */
  private clientChannel (header: JobHeader, client: string): JobRelayChannel | undefined {
    return jobChannel(this.init.payments?.manager, this.init.payments?.required ?? false, header.channel, client, 'proxy')
  }

  private admit (client: string, delta: number): void {
    this.inFlight += delta
    bump(this.byClient, client, delta)
    this.init.metrics?.jobsInFlight.set({ side: 'proxy' }, this.inFlight)
  }

  /** Runs the job on the first candidate, on the next if it fails before its first chunk; relays to the client. */
  private async relay (job: RelayJob, attempts: Array<{ ranked: RankedWorker, sealed: SealedRequest }>): Promise<void> {
    const { hop, header, deadlineAtMs, controller, startedMs } = job
    const payments = this.init.payments
    let lastError: unknown
    for (const [index, { ranked, sealed }] of attempts.entries()) {
      const worker = ranked.entry.peerId
      const remainingMs = Math.floor(deadlineAtMs - performance.now() - JOB_HOP_MARGIN_MS)
      if (remainingMs < 1) throw new InferenceError('timeout', `the job's deadline passed before a worker could take it${lastError == null ? '' : ` (${(lastError as Error).message})`}`)
      if (index > 0) this.counts.retried++
      hop.routed()
      await hop.send({ routed: { worker, attempt: index + 1 } })
      this.choice.started(worker)
      // the slot held for this job while it was offered is now counted by the attempt itself
      job.reserved.release()
      const routeMs = Math.round(performance.now() - startedMs)
      const price = workerPrice(ranked)
      hop.setPayee(job.clientChannel == null ? undefined : new JobPayee(job.clientChannel, this.clientPrice(price), payments?.manager.terms().creditWindow ?? 0n, payments))
      let toWorker: OutboundHop<WorkEvent> | undefined
      try {
        // a worker whose /cocoon/pay stalls costs the job a few seconds, then the next candidate takes it
        const payer = payments == null ? undefined : new JobPayer(await payments.payerFor(worker, AbortSignal.any([controller.signal, AbortSignal.timeout(payments.setupWaitMs ?? PAY_SETUP_DEADLINE_MS)])), price)
        const stream = await this.node.dialProtocol(peerIdFromString(worker), WORK_PROTOCOL, {
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(Math.min(remainingMs, JOB_SETUP_DEADLINE_MS))])
        })
        const workerStream = new FramedStream(stream, { protocol: WORK_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: remainingMs })
        toWorker = new OutboundHop({
          framed: workerStream,
          events: WorkEvent,
          resultOf: (event) => event.final,
          upstream: `worker ${worker}`,
          requestId: header.requestId,
          signal: controller.signal,
          deadlineAtMs,
          worker,
          payer,
          // the worker is paid for what reached the client, so a client that stops paying costs this proxy one credit window
          payAfterHandOn: true
        })
        if (controller.signal.aborted) throw controller.signal.reason
        await workerStream.write(WorkRequest, { header: { ...header, deadlineMs: remainingMs, channel: payer?.channel ?? '' }, sealed }, { signal: controller.signal })
        let firstChunkMs = 0
        // the proxy relays ciphertext: a chunk is handed on as it came
        for await (const event of toWorker.run(chunk => chunk)) {
          if (event.type === 'chunk') {
            if (toWorker.chunks === 1) firstChunkMs = Math.round(performance.now() - startedMs)
            await hop.sendChunk(event.tokens, () => event.chunk)
            continue
          }
          if (event.type !== 'final') continue
          const payee = hop.payee
          const client = payee == null || payer == null ? undefined : payee.final(event.usage)
          const cost: JobCost | undefined = client == null || payer == null ? undefined : { client, worker: payer.cost, commission: client - payer.cost }
          const totalMs = Math.round(performance.now() - startedMs)
          // the worker's side ends in the background: the final goes to the client without waiting on it
          void toWorker.close()
          this.init.registry.recordResult(worker, { ok: true, latencyMs: event.result.totalMs })
          this.counts.relayed++
          this.init.metrics?.jobs.inc({ side: 'proxy', model: header.model, result: 'ok' })
          this.init.metrics?.jobSeconds.observe({ side: 'proxy', phase: 'first_chunk' }, firstChunkMs / 1000)
          this.init.metrics?.jobSeconds.observe({ side: 'proxy', phase: 'total' }, totalMs / 1000)
          await hop.finish({ final: { result: event.event.final, timings: { routeMs, firstChunkMs, totalMs }, cost } })
          return
        }
        throw new InferenceError('worker_failed', `worker ${worker} ended the stream without a result`)
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason
        if (err instanceof ProtocolError && (err.errorCode === ErrorCode.PAYMENT_REQUIRED || err.errorCode === ErrorCode.PAYMENT_REFUSED)) throw err
        // our own channel failing mid-job is not the worker's fault; setting one up with it (before toWorker) is
        if (err instanceof ChannelError && toWorker != null) throw new ProtocolError(ErrorCode.PAYMENT_REFUSED, `paying worker ${worker}: ${err.message}`)
        const blameless = err instanceof RemoteError && (err.remoteCode === ErrorCode.BAD_REQUEST || err.remoteCode === ErrorCode.TOO_LARGE || err.remoteCode === ErrorCode.PAYMENT_REQUIRED || err.remoteCode === ErrorCode.PAYMENT_REFUSED)
        if (!blameless) {
          this.init.registry.recordResult(worker, { ok: false })
          if (err instanceof InferenceError || err instanceof RemoteError) this.init.evidence.forget(worker)
        }
        const failure = toInferenceError(err, `worker ${worker}`)
        const chunks = toWorker?.chunks ?? 0
        if (chunks > 0) {
          throw new InferenceError('worker_failed', `worker ${worker} failed after ${chunks} chunk${chunks === 1 ? '' : 's'}: ${failure.message}`, { cause: err })
        }
        const retryable = !blameless && (!(err instanceof RemoteError) || RETRYABLE.has(err.remoteCode))
        this.init.log('worker %s failed before its first chunk (%s)%s', worker, failure.message, retryable && index + 1 < attempts.length ? '; trying the next' : '')
        if (!retryable) throw failure
        lastError = failure
      } finally {
        toWorker?.dispose()
        this.choice.ended(worker)
      }
    }
    const last = lastError instanceof InferenceError ? lastError : undefined
    throw new InferenceError(last?.code === 'overloaded' ? 'overloaded' : 'worker_failed', `no worker could run the job: ${last?.message ?? 'unknown failure'}`, { retryAfterMs: last?.retryAfterMs })
  }
}

type JobRelayChannel = NonNullable<ReturnType<ChannelManager['payee']>>

/** One job as it is relayed. */
interface RelayJob {
  /** The client's side. */
  hop: InboundHop<JobEvent>
  /** The slot held on the first worker since the job left the queue. */
  reserved: Choice
  header: JobHeader
  deadlineAtMs: number
  controller: AbortController
  startedMs: number
  /** The client's channel to this proxy, when the job is paid. */
  clientChannel: JobRelayChannel | undefined
}

/** What a failure is on `/cocoon/job`: internals never leak. */
function toAnswer (reason: unknown): ProtocolError {
  if (reason instanceof ProtocolError) return reason
  if (reason instanceof InferenceError) return toProtocolError(reason)
  return new ProtocolError(errorCodeFor(reason), (reason as Error).message)
}


function bump (map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta
  if (next <= 0) map.delete(key)
  else map.set(key, next)
}

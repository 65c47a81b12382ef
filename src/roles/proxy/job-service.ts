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
 */
import { peerIdFromString } from '@libp2p/peer-id'
import {
  JOB_HOP_MARGIN_MS, JOB_MAX_CANDIDATES, JOB_MAX_FRAME_BYTES, JOB_MAX_STREAMS_PER_CONNECTION,
  JOB_PROTOCOL, JOB_SETUP_DEADLINE_MS, MODELS_MAX_FRAME_BYTES, MODELS_PROTOCOL, WORK_PROTOCOL
} from '../../p2p/constants.js'
import { answerWithError, errorCodeFor, FramedStream, handleRequests, ProtocolError } from '../../p2p/framing.js'
import { ErrorCode } from '../../p2p/protos/framing.js'
import { JobBody, JobEvent, JobOffer, JobRequest, ModelsRequest, ModelsResponse, WorkEvent, WorkRequest } from '../../p2p/protos/job.js'
import { RemoteError } from '../../errors.js'
import { cancelStream, checkHeader, toInferenceError, toProtocolError, verifyResult, watchForCancel } from '../../inference/job-wire.js'
import { InferenceError } from '../../inference/types.js'
import { rankWorkers } from './job-router.js'
import type { RankedWorker } from './job-router.js'
import type { WorkerEvidence } from './worker-evidence.js'
import type { WorkerRegistry } from './worker-registry.js'
import type { WorkerLookup } from './worker-lookup.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { JobHeader, ModelInfo, SealedRequest, WorkerCandidate } from '../../p2p/protos/job.js'
import type { Connection, Logger, Stream } from '@libp2p/interface'

export interface ProxyJobServiceInit {
  registry: WorkerRegistry
  lookup: WorkerLookup
  evidence: WorkerEvidence
  maxJobs: number
  maxJobsPerClient: number
  /** How long a job for an unknown model may wait on the DHT fallback. */
  lookupWaitMs?: number
  metrics?: NodeMetrics
  log: Logger
}

export interface ProxyJobStatus {
  inFlight: number
  byClient: Record<string, number>
  byWorker: Record<string, number>
  relayed: number
  failed: number
  cancelled: number
  retried: number
}

const DEFAULT_LOOKUP_WAIT_MS = 2_000
/** Worker errors after which the proxy tries the next candidate (before the first chunk). */
const RETRYABLE = new Set<string>([
  ErrorCode.OVERLOADED, ErrorCode.UNAVAILABLE, ErrorCode.WORKER_FAILED, ErrorCode.INTERNAL,
  ErrorCode.MODEL_UNKNOWN, ErrorCode.UNKNOWN, ErrorCode.UNSUPPORTED
])

export class ProxyJobService {
  private readonly node: CocoonLibp2p
  private readonly init: ProxyJobServiceInit
  private readonly byClient = new Map<string, number>()
  private readonly byWorker = new Map<string, number>()
  private readonly controllers = new Set<AbortController>()
  private inFlight = 0
  private readonly counts = { relayed: 0, failed: 0, cancelled: 0, retried: 0 }

  constructor (node: CocoonLibp2p, init: ProxyJobServiceInit) {
    this.node = node
    this.init = init
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
    return { inFlight: this.inFlight, byClient: Object.fromEntries(this.byClient), byWorker: Object.fromEntries(this.byWorker), ...this.counts }
  }

  /** Models the registry can route now, for /cocoon/models. */
  catalog (): ModelInfo[] {
    return this.init.registry.models().map(({ model, ...m }) => ({ name: model, ...m }))
  }

  private async serve (stream: Stream, connection: Connection): Promise<void> {
    const client = connection.remotePeer.toString()
    const framed = new FramedStream(stream, { protocol: JOB_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS })
    const controller = new AbortController()
    const startedMs = performance.now()
    let header: JobHeader | undefined
    let admitted = false
    this.controllers.add(controller)
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

      const ranked = await this.rank(header, controller.signal)
      const wanted = Math.max(1, Math.min(request.candidates, JOB_MAX_CANDIDATES))
      const candidates = await this.candidates(ranked, wanted)
      if (candidates.length === 0) throw new ProtocolError(ErrorCode.NO_CAPACITY, `no worker for ${header.model} could present evidence; retry shortly`, 1_000)
      await framed.write(JobOffer, { candidates: candidates.map(c => c.wire) }, { signal: controller.signal })

      const body = await framed.read(JobBody, { signal: controller.signal })
      const sealedFor = new Map<string, SealedRequest>()
      for (const s of body.sealed) {
        if (candidates.some(c => c.wire.peerId === s.worker)) sealedFor.set(s.worker, s)
      }
      const attempts = candidates.filter(c => sealedFor.has(c.wire.peerId))
      if (attempts.length === 0) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'the job body is sealed to none of the offered workers')

      // from here on, the client's side carries only a cancel (or its close/reset)
      watchForCancel(framed, controller.signal, Math.max(1, deadlineAtMs - performance.now()) + 1_000, () => {
        controller.abort(new InferenceError('cancelled', 'the client cancelled the job'))
      })

      await this.relay(framed, header, attempts.map(a => ({ ranked: a.ranked, sealed: sealedFor.get(a.wire.peerId) as SealedRequest })), deadlineAtMs, controller, startedMs)
    } catch (err) {
      const reason: unknown = controller.signal.aborted ? controller.signal.reason : err
      if (reason instanceof InferenceError && reason.code === 'cancelled') {
        this.counts.cancelled++
        this.init.metrics?.jobs.inc({ side: 'proxy', model: header?.model ?? 'unknown', result: 'cancelled' })
        framed.abort(new Error('cancelled'))
        return
      }
      const answer = reason instanceof ProtocolError ? reason : reason instanceof InferenceError ? toProtocolError(reason) : new ProtocolError(errorCodeFor(reason), (reason as Error).message)
      this.counts.failed++
      this.init.metrics?.jobs.inc({ side: 'proxy', model: header?.model ?? 'unknown', result: ErrorCode[answer.errorCode] ?? 'error' })
      this.init.metrics?.protocolErrors.inc({ protocol: JOB_PROTOCOL, code: answer.errorCode })
      this.init.log('job %s from %p failed with %s: %s', header?.requestId, connection.remotePeer, answer.errorCode, answer.message)
      await answerWithError(framed, answer.errorCode, answer)
    } finally {
      this.controllers.delete(controller)
      if (!controller.signal.aborted) controller.abort()
      if (admitted) this.admit(client, -1)
    }
  }

  private admit (client: string, delta: number): void {
    this.inFlight += delta
    bump(this.byClient, client, delta)
    this.init.metrics?.jobsInFlight.set({ side: 'proxy' }, this.inFlight)
  }

  /** Ranked workers for the job, asking the DHT (briefly) when the registry knows none. */
  private async rank (header: JobHeader, signal: AbortSignal): Promise<RankedWorker[]> {
    const cap = { promptPerM: header.maxPricePromptPerM, completionPerM: header.maxPriceCompletionPerM }
    const inFlight = (peerId: string): number => this.byWorker.get(peerId) ?? 0
    let decision = rankWorkers(header.model, this.init.registry.offersFor(header.model), cap, inFlight)
    if (!decision.ok && decision.code === 'model_unknown') {
      const wait = AbortSignal.any([signal, AbortSignal.timeout(this.init.lookupWaitMs ?? DEFAULT_LOOKUP_WAIT_MS)])
      await this.init.lookup.find(header.model, { signal: wait }).catch(() => undefined)
      decision = rankWorkers(header.model, this.init.registry.offersFor(header.model), cap, inFlight)
    }
    if (!decision.ok) {
      const code = decision.code === 'model_unknown' ? ErrorCode.MODEL_UNKNOWN : decision.code === 'price_too_low' ? ErrorCode.PRICE_TOO_LOW : ErrorCode.NO_CAPACITY
      throw new ProtocolError(code, decision.message, decision.code === 'no_capacity' ? 1_000 : 0)
    }
    return decision.workers
  }

  /** The first `wanted` ranked workers whose epoch evidence we have or can get now. */
  private async candidates (ranked: RankedWorker[], wanted: number): Promise<Array<{ ranked: RankedWorker, wire: WorkerCandidate }>> {
    const out: Array<{ ranked: RankedWorker, wire: WorkerCandidate }> = []
    for (let i = 0; i < ranked.length && out.length < wanted;) {
      const batch = ranked.slice(i, i + wanted - out.length)
      i += batch.length
      const results = await Promise.allSettled(batch.map(async r => this.init.evidence.get(peerIdFromString(r.entry.peerId), r.entry.attestation.jobPublicKey)))
      for (const [j, result] of results.entries()) {
        const r = batch[j]
        if (result.status === 'rejected') {
          this.init.log('no epoch evidence from %s - %s', r.entry.peerId, (result.reason as Error).message)
          continue
        }
        out.push({
          ranked: r,
          wire: {
            peerId: r.entry.peerId,
            evidence: result.value,
            jobPublicKey: new Uint8Array(r.entry.attestation.jobPublicKey),
            pricePromptPerM: r.offer.pricePromptPerM,
            priceCompletionPerM: r.offer.priceCompletionPerM
          }
        })
      }
    }
    return out
  }

  /** Runs the job on the first candidate, on the next if it fails before its first chunk; relays to the client. */
  private async relay (
    client: FramedStream, header: JobHeader, attempts: Array<{ ranked: RankedWorker, sealed: SealedRequest }>,
    deadlineAtMs: number, controller: AbortController, startedMs: number
  ): Promise<void> {
    let lastError: unknown
    for (const [index, { ranked, sealed }] of attempts.entries()) {
      const worker = ranked.entry.peerId
      const remainingMs = Math.floor(deadlineAtMs - performance.now() - JOB_HOP_MARGIN_MS)
      if (remainingMs < 1) throw new InferenceError('timeout', `the job's deadline passed before a worker could take it${lastError == null ? '' : ` (${(lastError as Error).message})`}`)
      if (index > 0) this.counts.retried++
      await toClient(client, { routed: { worker, attempt: index + 1 } }, controller)
      bump(this.byWorker, worker, +1)
      const routeMs = Math.round(performance.now() - startedMs)
      let chunks = 0
      let workerStream: FramedStream | undefined
      const onAbort = (): void => { void cancelStream(workerStream, 'cancelled by the client') }
      controller.signal.addEventListener('abort', onAbort, { once: true })
      try {
        const stream = await this.node.dialProtocol(peerIdFromString(worker), WORK_PROTOCOL, {
          signal: AbortSignal.any([controller.signal, AbortSignal.timeout(Math.min(remainingMs, JOB_SETUP_DEADLINE_MS))])
        })
        workerStream = new FramedStream(stream, { protocol: WORK_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: remainingMs })
        if (controller.signal.aborted) throw controller.signal.reason
        await workerStream.write(WorkRequest, { header: { ...header, deadlineMs: remainingMs }, sealed }, { signal: controller.signal })
        let firstChunkMs = 0
        while (true) {
          const readMs = Math.max(1, Math.floor(deadlineAtMs - performance.now()))
          const event = await workerStream.read(WorkEvent, { signal: controller.signal, deadlineMs: readMs })
          if (event.chunk != null) {
            if (chunks === 0) firstChunkMs = Math.round(performance.now() - startedMs)
            chunks++
            await toClient(client, { chunk: event.chunk }, controller)
            continue
          }
          if (event.final == null) throw new ProtocolError(ErrorCode.BAD_REQUEST, 'empty work event')
          const result = await verifyResult(event.final, worker, header.requestId)
          if (result.chunks !== chunks) throw new InferenceError('worker_failed', `worker ${worker} counted ${result.chunks} chunks but sent ${chunks}`)
          const totalMs = Math.round(performance.now() - startedMs)
          await toClient(client, { final: { result: event.final, timings: { routeMs, firstChunkMs, totalMs } } }, controller)
          await client.close({ signal: AbortSignal.timeout(JOB_SETUP_DEADLINE_MS) }).catch(() => {})
          await workerStream.close().catch(() => {})
          this.init.registry.recordResult(worker, { ok: true, latencyMs: result.totalMs })
          this.counts.relayed++
          this.init.metrics?.jobs.inc({ side: 'proxy', model: header.model, result: 'ok' })
          this.init.metrics?.jobSeconds.observe({ side: 'proxy', phase: 'first_chunk' }, firstChunkMs / 1000)
          this.init.metrics?.jobSeconds.observe({ side: 'proxy', phase: 'total' }, totalMs / 1000)
          return
        }
      } catch (err) {
        if (controller.signal.aborted) throw controller.signal.reason
        workerStream?.abort(new Error('job failed'))
        const blameless = err instanceof RemoteError && (err.remoteCode === ErrorCode.BAD_REQUEST || err.remoteCode === ErrorCode.TOO_LARGE)
        if (!blameless) {
          this.init.registry.recordResult(worker, { ok: false })
          if (err instanceof InferenceError || err instanceof RemoteError) this.init.evidence.forget(worker)
        }
        const failure = toInferenceError(err, `worker ${worker}`)
        if (chunks > 0) {
          throw new InferenceError('worker_failed', `worker ${worker} failed after ${chunks} chunk${chunks === 1 ? '' : 's'}: ${failure.message}`, { cause: err })
        }
        const retryable = !blameless && (!(err instanceof RemoteError) || RETRYABLE.has(err.remoteCode))
        this.init.log('worker %s failed before its first chunk (%s)%s', worker, failure.message, retryable && index + 1 < attempts.length ? '; trying the next' : '')
        if (!retryable) throw failure
        lastError = failure
      } finally {
        controller.signal.removeEventListener('abort', onAbort)
        bump(this.byWorker, worker, -1)
      }
    }
    const last = lastError instanceof InferenceError ? lastError : undefined
    throw new InferenceError(last?.code === 'overloaded' ? 'overloaded' : 'worker_failed', `no worker could run the job: ${last?.message ?? 'unknown failure'}`, { retryAfterMs: last?.retryAfterMs })
  }
}

/** Writes to the client; a client that cannot be written to has gone, which cancels the job (never the worker's fault). */
async function toClient (client: FramedStream, event: Partial<JobEvent>, controller: AbortController): Promise<void> {
  try {
    await client.write(JobEvent, event, { signal: controller.signal })
  } catch (err) {
    if (!controller.signal.aborted) controller.abort(new InferenceError('cancelled', 'the client went away', { cause: err }))
    throw controller.signal.reason
  }
}

function bump (map: Map<string, number>, key: string, delta: number): void {
  const next = (map.get(key) ?? 0) + delta
  if (next <= 0) map.delete(key)
  else map.set(key, next)
}

/**
 * Runs inference jobs for the client's API over `/cocoon/job/1.0.0`: picks an
 * attested proxy, checks the evidence of every worker the proxy offers
 * (signature, binding to the worker's peer id and job key, the network's
 * policy, the current epoch), seals the request to each, then opens the
 * sealed chunks as they stream in and checks the worker's signed result
 * (its key, the job, the chunk count and the request it opened).
 *
 * Aborting `run`'s signal sends a JobCancel and resets the stream, which the
 * proxy passes on to the worker.
 *
 * With settlement on, each job names the client's channel to the proxy; the
 * client pays for every sealed frame as it opens it, for the completion
 * tokens the worker sealed into that frame (so no hop can inflate them), and
 * settles the exact cost from the worker's signed usage at the end.
 */
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { concat } from 'uint8arrays/concat'
import { equals } from 'uint8arrays/equals'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import {
  JOB_MAX_BODY_BYTES, JOB_MAX_CANDIDATES, JOB_MAX_FRAME_BYTES, JOB_PROTOCOL, JOB_SETUP_DEADLINE_MS,
  MODELS_MAX_FRAME_BYTES, MODELS_PROTOCOL
} from '../../p2p/constants.js'
import { FramedStream, request } from '../../p2p/framing.js'
import { Evidence as WireEvidence } from '../../gen/capacity.pb.js'
import { JobBody, JobEvent, JobOffer, JobRequest, ModelsRequest, ModelsResponse } from '../../gen/job.pb.js'
import { evidenceFromWire } from '../../tee/attest-service.js'
import { randomRequestId, sealRequest } from '../../tee/seal.js'
import { OutboundHop } from '../../jobs/outbound.js'
import { headerAad, kindToWire, sealContext, sha256, tokensAad, toInferenceError } from '../../jobs/wire.js'
import { InferenceError } from '../../inference/types.js'
import { ChannelError, StreamClosedError } from '../../errors.js'
import { AdmissionQueue, QueueFullError } from '../../ops/admission-queue.js'
import { JobPayer } from '../../settlement/job-payments.js'
import { DEFAULT_CACHED_BP, DEFAULT_REASONING_BP } from '../../settlement/pricing.js'
import type { PayerChannel } from '../../settlement/channels.js'
import type { ResponseOpener } from '../../tee/seal.js'
import type { EvidenceVerifier } from '../../tee/attestor.js'
import type { VerifiedAttestation } from '../../tee/types.js'
import type { ApiEvent, ApiJob, ApiModel, CompletionService } from './api-types.js'
import type { ProxyPool } from './proxy-pool.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { FinishReason, InferenceChunk } from '../../inference/types.js'
import type { JobFinal, JobHeader, ModelInfo, SealedChunk, WorkerCandidate } from '../../gen/job.pb.js'
import type { Logger } from '@libp2p/interface'

export interface JobClientInit {
  proxies: ProxyPool
  verifier: Pick<EvidenceVerifier, 'verify'>
  maxPricePromptPerM: bigint
  maxPriceCompletionPerM: bigint
  defaultMaxTokens: number
  requestTimeoutMs: number
  /** Set when the client pays: its channel to a proxy, opened on first need. */
  payments?: {
    payerFor(proxy: string, signal: AbortSignal): Promise<PayerChannel>
    /** Proxies with a channel open now. */
    payableProxies?(): Set<string>
  }
  /**
   * Jobs this client runs at once, and the line the rest wait in (default
   * 64 at once, 1024 waiting, 60 s at most): only a full line or an expired
   * wait is refused, as overloaded (429).
   */
  queue?: { maxConcurrent: number, depth: number, maxWaitMs: number }
  metrics?: NodeMetrics
  log: Logger
}

export const DEFAULT_CLIENT_QUEUE = { maxConcurrent: 64, depth: 1024, maxWaitMs: 60_000 }

export interface JobClientStatus {
  completed: number
  failed: number
  cancelled: number
  verifiedWorkers: number
  /** Jobs in the swarm now, and waiting in line for their turn. */
  running: number
  queued: number
}

/** Verified worker evidence is reused for the same bytes (it is epoch-bound: at most an hour). */
const VERIFIED_TTL_MS = 60 * 60_000
const FINISH_REASONS = new Set<string>(['stop', 'length', 'content_filter', 'tool_calls'])
/** When to try again after the proxy could not be reached: about when a restarted one is back. */
const PROXY_RETRY_MS = 2_000

export class JobClient implements CompletionService {
  private readonly node: CocoonLibp2p
  private readonly init: JobClientInit
  private readonly verified = new Map<string, { attestation: VerifiedAttestation, expiresAtMs: number }>()
  private readonly counts = { completed: 0, failed: 0, cancelled: 0 }
  private readonly queue: AdmissionQueue
  private readonly maxConcurrent: number
  private running = 0

  constructor (node: CocoonLibp2p, init: JobClientInit) {
    this.node = node
    this.init = init
    const q = init.queue ?? DEFAULT_CLIENT_QUEUE
    this.maxConcurrent = q.maxConcurrent
    this.queue = new AdmissionQueue({
      depth: q.depth,
      maxWaitMs: q.maxWaitMs,
      what: 'requests',
      onWait: init.metrics?.observeQueue('client', () => this.queue.length)
    })
  }

  status (): JobClientStatus {
    return { ...this.counts, verifiedWorkers: this.verified.size, running: this.running, queued: this.queue.length }
  }

  /** Models the swarm offers, merged over the proxies we know. */
  async models (signal: AbortSignal): Promise<ApiModel[]> {
    const proxies = await this.init.proxies.attested(signal)
    if (proxies.length === 0) throw new InferenceError('unavailable', 'no attested proxy is known yet; is the client connected to the swarm?', { retryAfterMs: 2_000 })
    const answers = await Promise.allSettled(proxies.slice(0, 3).map(async p => request(this.node, peerIdFromString(p), MODELS_PROTOCOL, { request: ModelsRequest, response: ModelsResponse }, {}, {
      maxFrameBytes: MODELS_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS, signal
    })))
    const merged = new Map<string, ModelInfo>()
    let answered = 0
    for (const a of answers) {
      if (a.status !== 'fulfilled') continue
      answered++
      for (const m of a.value.models) {
        const seen = merged.get(m.name)
        // proxies see mostly the same workers; keep the widest view
        if (seen == null || m.workers > seen.workers) merged.set(m.name, m)
      }
    }
    if (answered === 0) throw toInferenceError((answers[0] as PromiseRejectedResult).reason, 'the proxy')
    const created = Math.floor(Date.now() / 1000)
    return [...merged.values()].map(m => ({
      id: m.name,
      created,
      workers: m.workers,
      contextLength: m.contextLength,
      pricePromptPerM: { min: m.minPromptPerM.toString(), max: m.maxPromptPerM.toString() },
      priceCompletionPerM: { min: m.minCompletionPerM.toString(), max: m.maxCompletionPerM.toString() },
      commissionBp: m.commissionBp,
      synthetic: m.synthetic,
      description: m.synthetic && !/synthetic/i.test(m.description) ? `synthetic test model: ${m.description}` : m.description
    }))
  }

  /** Runs a job once it is its turn (at most `queue.maxConcurrent` at once); the rest wait in line. */
  async * run (job: ApiJob, signal: AbortSignal): AsyncGenerator<ApiEvent, void, undefined> {
    await this.queue.admit(() => {
      if (this.running >= this.maxConcurrent) return undefined
      this.running++
      return true
    }, signal).catch((err: unknown) => {
      if (err instanceof QueueFullError) throw new InferenceError('overloaded', `this client is running ${this.running} requests and ${err.message}`, { retryAfterMs: err.retryAfterMs })
      throw err
    })
    try {
      yield * this.runAdmitted(job, signal)
    } finally {
      this.running--
      this.queue.wake()
    }
  }

  private async * runAdmitted (job: ApiJob, signal: AbortSignal): AsyncGenerator<ApiEvent, void, undefined> {
    const plaintext = new TextEncoder().encode(JSON.stringify(job.body))
    if (plaintext.byteLength > JOB_MAX_BODY_BYTES) throw new InferenceError('too_large', `the request body is ${plaintext.byteLength} bytes; at most ${JOB_MAX_BODY_BYTES} can be sealed`)
    const startedMs = performance.now()
    const requestId = /^[0-9a-f]{32}$/.test(job.requestId) ? job.requestId : randomRequestId()
    const header: JobHeader = {
      requestId,
      model: job.model,
      kind: kindToWire(job.kind),
      maxTokens: job.maxTokens ?? this.init.defaultMaxTokens,
      maxPricePromptPerM: this.init.maxPricePromptPerM,
      maxPriceCompletionPerM: this.init.maxPriceCompletionPerM,
      deadlineMs: this.init.requestTimeoutMs,
      channel: ''
    }
    let proxy = await this.init.proxies.pick(signal, this.init.payments?.payableProxies?.())
    const deadline = AbortSignal.timeout(this.init.requestTimeoutMs)
    const jobSignal = AbortSignal.any([signal, deadline])
    this.init.proxies.jobStarted(proxy)
    let hop: OutboundHop<JobEvent> | undefined
    try {
      let channel = this.init.payments == null ? undefined : await this.payerFor(proxy, jobSignal)
      header.channel = channel?.address ?? ''
      let stream
      for (let attempt = 1; ; attempt++) {
        try {
          stream = await this.node.dialProtocol(peerIdFromString(proxy), JOB_PROTOCOL, { signal: AbortSignal.any([jobSignal, AbortSignal.timeout(JOB_SETUP_DEADLINE_MS)]) })
          break
        } catch (err) {
          // Nothing was sent yet: a proxy we cannot reach (crashed, partitioned
          // away) sits out, and the job goes to another one.
          const unreachable = new InferenceError('proxy_unreachable', `proxy ${proxy} cannot be reached (${(err as Error).message}); no other attested proxy is known`, { retryAfterMs: PROXY_RETRY_MS, cause: err })
          if (jobSignal.aborted) throw err
          this.init.proxies.demote(proxy)
          if (attempt >= JOB_PROXY_ATTEMPTS) throw unreachable
          this.init.log('proxy %s unreachable, trying another - %s', proxy, (err as Error).message)
          const next = await this.init.proxies.pick(jobSignal, undefined, proxy).catch(() => { throw unreachable })
          this.init.proxies.jobEnded(proxy)
          proxy = next
          this.init.proxies.jobStarted(proxy)
          channel = this.init.payments == null ? undefined : await this.payerFor(proxy, jobSignal)
          header.channel = channel?.address ?? ''
        }
      }
      const framed = new FramedStream(stream, { protocol: JOB_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS })
      const sealed = new Map<string, { opener: ResponseOpener, digest: Uint8Array, candidate: WorkerCandidate }>()
      const payChannel = channel
      hop = new OutboundHop({
        framed,
        events: JobEvent,
        resultOf: (event) => event.final?.result,
        upstream: 'the proxy',
        requestId,
        signal: jobSignal,
        deadlineAtMs: startedMs + this.init.requestTimeoutMs,
        onRouted: (worker) => {
          const session = sealed.get(worker)
          if (session == null) throw new InferenceError('worker_failed', `the proxy routed to ${worker}, a worker the job was not sealed to`)
          const c = session.candidate
          return payChannel == null ? undefined : new JobPayer(payChannel, { promptPerM: c.pricePromptPerM, completionPerM: c.priceCompletionPerM, cachedBp: DEFAULT_CACHED_BP, reasoningBp: DEFAULT_REASONING_BP })
        }
      })
      await framed.write(JobRequest, { header, candidates: JOB_MAX_CANDIDATES }, { signal: jobSignal })
      // the proxy answers once a worker is free: it may queue the job for as long as the job may last
      const offer = await framed.read(JobOffer, { signal: jobSignal, deadlineMs: Math.max(1, startedMs + this.init.requestTimeoutMs - performance.now()) })

      const aad = headerAad(header)
      const context = sealContext(requestId)
      const body: JobBody = { sealed: [] }
      const refusals: string[] = []
      for (const candidate of offer.candidates.slice(0, JOB_MAX_CANDIDATES)) {
        const problem = await this.checkCandidate(candidate)
        if (problem != null) {
          refusals.push(problem)
          this.init.log('refusing worker %s offered by %s: %s', candidate.peerId, proxy, problem)
          continue
        }
        const { sealed: s, opener } = sealRequest(candidate.jobPublicKey, plaintext, context, aad)
        sealed.set(candidate.peerId, { opener, digest: sha256(s.ciphertext), candidate })
        body.sealed.push({ worker: candidate.peerId, enc: new Uint8Array(s.enc), ciphertext: new Uint8Array(s.ciphertext) })
      }
      if (body.sealed.length === 0) {
        throw new InferenceError('worker_failed', `the proxy offered no worker this client can trust${refusals.length > 0 ? `: ${refusals.join('; ')}` : ''}`)
      }
      await framed.write(JobBody, body, { signal: jobSignal })

      const decoder = new TextDecoder('utf-8', { fatal: true })
      // the token count opens only if it is the one the worker sealed
      const open = (chunk: SealedChunk, worker: string): InferenceChunk[] => {
        const session = sealed.get(worker) as { opener: ResponseOpener }
        return parseChunks(decoder.decode(session.opener.open(chunk.seq, chunk.ciphertext, tokensAad(chunk.tokens))))
      }
      for await (const event of hop.run(open)) {
        if (event.type === 'routed') continue
        if (event.type === 'chunk') {
          for (const chunk of event.opened) yield { type: 'chunk', chunk }
          continue
        }
        const { result, usage, worker } = event
        const final = event.event.final as JobFinal
        const session = sealed.get(worker) as { digest: Uint8Array }
        if (!equals(result.requestDigest, session.digest)) throw new InferenceError('worker_failed', 'the worker answered a request other than the one this client sealed')
        const finishReason = (FINISH_REASONS.has(result.finishReason) ? result.finishReason : 'stop') as FinishReason
        const payer = hop.payer
        const reported = final.cost
        if (payer != null && reported != null && reported.client !== payer.cost) {
          this.init.log('job %s: the proxy counts %s nanoTON, this client %s', requestId, reported.client, payer.cost)
        }
        this.counts.completed++
        this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: 'ok' })
        this.init.metrics?.jobSeconds.observe({ side: 'client', phase: 'total' }, (performance.now() - startedMs) / 1000)
        this.init.metrics?.jobTokens.inc({ side: 'client', model: job.model, kind: 'prompt' }, usage.promptTokens)
        this.init.metrics?.jobTokens.inc({ side: 'client', model: job.model, kind: 'completion' }, usage.completionTokens)
        await hop.close()
        const cost = payer == null ? undefined : { client: payer.cost.toString(), worker: reported?.worker.toString() ?? null, commission: reported?.commission.toString() ?? null }
        yield {
          type: 'done',
          usage,
          finishReason,
          ...(cost == null ? {} : { cost }),
          cocoon: {
            request_id: requestId,
            proxy,
            worker,
            signed_result: uint8ArrayToString(final.result?.result ?? new Uint8Array(0), 'base64pad'),
            ...(cost == null || payer == null ? {} : { cost_nanoton: { paid: cost.client, worker: cost.worker, commission: cost.commission, channel: payer.channel } }),
            timings_ms: {
              worker: { queue: result.queueMs, first_chunk: result.firstChunkMs, total: result.totalMs },
              proxy: { route: final.timings?.routeMs ?? 0, first_chunk: final.timings?.firstChunkMs ?? 0, total: final.timings?.totalMs ?? 0 },
              client: { total: Math.round(performance.now() - startedMs) }
            }
          }
        }
        return
      }
      throw new InferenceError('worker_failed', 'the proxy ended the stream without a result')
    } catch (err) {
      if (signal.aborted) {
        this.counts.cancelled++
        this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: 'cancelled' })
        throw new InferenceError('cancelled', 'the request was cancelled', { cause: err })
      }
      const failure = deadline.aborted
        ? new InferenceError('timeout', `no complete answer within ${this.init.requestTimeoutMs} ms`, { cause: err })
        : proxyGone(err, proxy) ?? toInferenceError(err, 'the proxy')
      this.counts.failed++
      this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: failure.code })
      if (failure.code === 'worker_failed' && isProxyFault(err)) this.init.proxies.demote(proxy)
      if (err instanceof ChannelError) throw new InferenceError(err.reason === 'overspent' ? 'payment_required' : 'unavailable', `paying the proxy failed: ${err.message}`, { cause: err })
      throw failure
    } finally {
      this.init.proxies.jobEnded(proxy)
      // a consumer that stops iterating early (client went away) must not leave the job running
      hop?.dispose()
    }
  }

  private async payerFor (proxy: string, signal: AbortSignal): Promise<PayerChannel> {
    try {
      return await (this.init.payments as NonNullable<JobClientInit['payments']>).payerFor(proxy, signal)
    } catch (err) {
      if (signal.aborted) throw err
      throw new InferenceError('unavailable', `no payment channel to the proxy: ${(err as Error).message}`, { cause: err, retryAfterMs: 2_000 })
    }
  }

  /** Why a candidate cannot be trusted, or undefined when its evidence checks out. */
  private async checkCandidate (candidate: WorkerCandidate): Promise<string | undefined> {
    if (candidate.pricePromptPerM > this.init.maxPricePromptPerM || candidate.priceCompletionPerM > this.init.maxPriceCompletionPerM) return 'it asks more than the price cap'
    const key = uint8ArrayToString(sha256(concat([new TextEncoder().encode(candidate.peerId), candidate.evidence])), 'base16')
    const hit = this.verified.get(key)
    let attestation = hit != null && hit.expiresAtMs > Date.now() ? hit.attestation : undefined
    if (attestation == null) {
      try {
        const peer = peerIdFromString(candidate.peerId)
        if (peer.publicKey == null) return 'its peer id carries no public key'
        const evidence = evidenceFromWire(WireEvidence.decode(candidate.evidence))
        attestation = await this.init.verifier.verify(evidence, { libp2pPublicKey: publicKeyToProtobuf(peer.publicKey), freshness: 'epoch' })
      } catch (err) {
        return `its evidence does not verify (${(err as Error).message})`
      }
      if (this.verified.size > 4096) this.verified.clear()
      this.verified.set(key, { attestation, expiresAtMs: Date.now() + VERIFIED_TTL_MS })
    }
    if (!equals(attestation.jobPublicKey, candidate.jobPublicKey)) return 'the offered job key is not the attested one'
    return undefined
  }
}


/** A sealed frame holds one chunk, or an array of the chunks the worker had ready at once. */
function parseChunks (text: string): InferenceChunk[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    throw new InferenceError('worker_failed', 'the worker sent a chunk that is not JSON')
  }
  const list = Array.isArray(parsed) ? parsed : [parsed]
  for (const chunk of list) {
    if (chunk == null || typeof chunk !== 'object' || !Array.isArray((chunk as InferenceChunk).choices)) {
      throw new InferenceError('worker_failed', 'the worker sent a chunk that is not a completion chunk')
    }
  }
  return list as InferenceChunk[]
}

/** Errors that point at the proxy rather than a worker: it broke the protocol. */
/** Proxies a job tries when the chosen one cannot be reached (the dial fails before anything is sent). */
const JOB_PROXY_ATTEMPTS = 3

function isProxyFault (err: unknown): boolean {
  return err instanceof Error && (err.name === 'MalformedMessageError' || err.name === 'FrameTooLargeError')
}

/** When the proxy itself went away mid-job (its stream closed or reset, not an error it answered): proxy_unreachable. */
function proxyGone (err: unknown, proxy: string): InferenceError | undefined {
  if (!(err instanceof Error) || !CONNECTION_LOST.has(err.name)) return undefined
  return new InferenceError('proxy_unreachable', `the connection to proxy ${proxy} broke before the job ended (${err.message})`, { retryAfterMs: PROXY_RETRY_MS, cause: err })
}

/** Errors (ours and libp2p's, by name) that mean the stream or connection itself went away. */
const CONNECTION_LOST = new Set([
  StreamClosedError.name, 'StreamResetError', 'StreamAbortedError', 'StreamStateError', 'ConnectionClosedError', 'ConnectionClosingError', 'MuxerClosedError'
])

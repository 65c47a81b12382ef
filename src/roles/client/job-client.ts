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
import { createHash } from 'node:crypto'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { equals } from 'uint8arrays/equals'
import {
  JOB_CANCEL_GRACE_MS, JOB_MAX_BODY_BYTES, JOB_MAX_CANDIDATES, JOB_MAX_FRAME_BYTES, JOB_PROTOCOL, JOB_SETUP_DEADLINE_MS,
  MODELS_MAX_FRAME_BYTES, MODELS_PROTOCOL
} from '../../p2p/constants.js'
import { FramedStream, request } from '../../p2p/framing.js'
import { Evidence as WireEvidence } from '../../p2p/protos/capacity.js'
import { JobBody, JobEvent, JobOffer, JobRequest, JobUpstream, ModelsRequest, ModelsResponse } from '../../p2p/protos/job.js'
import { evidenceFromWire } from '../../tee/attest-service.js'
import { randomRequestId, sealRequest } from '../../tee/seal.js'
import { cancelStream, collectCountersigns, headerAad, kindToWire, sealContext, SerialWriter, sha256, tokensAad, toInferenceError, usageFromWire, verifyResult } from '../../inference/job-wire.js'
import { InferenceError } from '../../inference/types.js'
import { ChannelError } from '../../errors.js'
import { JobPayer } from '../../settlement/job-payments.js'
import { DEFAULT_CACHED_BP, DEFAULT_REASONING_BP } from '../../settlement/pricing.js'
import type { PayerChannel, PaymentUpdate } from '../../settlement/channels.js'
import type { ResponseOpener } from '../../tee/seal.js'
import type { EvidenceVerifier } from '../../tee/attestor.js'
import type { VerifiedAttestation } from '../../tee/types.js'
import type { ApiEvent, ApiJob, ApiModel, CompletionService } from './http-api.js'
import type { ProxyPool } from './proxy-pool.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { FinishReason, InferenceChunk } from '../../inference/types.js'
import type { JobHeader, ModelInfo, WorkerCandidate } from '../../p2p/protos/job.js'
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
  metrics?: NodeMetrics
  log: Logger
}

export interface JobClientStatus {
  completed: number
  failed: number
  cancelled: number
  verifiedWorkers: number
}

/** Verified worker evidence is reused for the same bytes (it is epoch-bound: at most an hour). */
const VERIFIED_TTL_MS = 60 * 60_000
const FINISH_REASONS = new Set<string>(['stop', 'length', 'content_filter', 'tool_calls'])

export class JobClient implements CompletionService {
  private readonly node: CocoonLibp2p
  private readonly init: JobClientInit
  private readonly verified = new Map<string, { attestation: VerifiedAttestation, expiresAtMs: number }>()
  private readonly counts = { completed: 0, failed: 0, cancelled: 0 }

  constructor (node: CocoonLibp2p, init: JobClientInit) {
    this.node = node
    this.init = init
  }

  status (): JobClientStatus {
    return { ...this.counts, verifiedWorkers: this.verified.size }
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

  async * run (job: ApiJob, signal: AbortSignal): AsyncGenerator<ApiEvent, void, undefined> {
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
    let framed: FramedStream | undefined
    let done = false
    let completed = false
    const onAbort = (): void => { if (!done) void cancelStream(framed, 'cancelled by the client') }
    jobSignal.addEventListener('abort', onAbort, { once: true })
    this.init.proxies.jobStarted(proxy)
    const writer = new SerialWriter()
    let payer: JobPayer | undefined
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
          if (jobSignal.aborted || attempt >= JOB_PROXY_ATTEMPTS) throw err
          this.init.log('proxy %s unreachable, trying another - %s', proxy, (err as Error).message)
          this.init.proxies.demote(proxy)
          const next = await this.init.proxies.pick(jobSignal).catch(() => { throw err })
          this.init.proxies.jobEnded(proxy)
          proxy = next
          this.init.proxies.jobStarted(proxy)
          channel = this.init.payments == null ? undefined : await this.payerFor(proxy, jobSignal)
          header.channel = channel?.address ?? ''
        }
      }
      framed = new FramedStream(stream, { protocol: JOB_PROTOCOL, maxFrameBytes: JOB_MAX_FRAME_BYTES, deadlineMs: JOB_SETUP_DEADLINE_MS })
      await framed.write(JobRequest, { header, candidates: JOB_MAX_CANDIDATES }, { signal: jobSignal })
      const offer = await framed.read(JobOffer, { signal: jobSignal })

      const aad = headerAad(header)
      const context = sealContext(requestId)
      const sealed = new Map<string, { opener: ResponseOpener, digest: Uint8Array, candidate: WorkerCandidate }>()
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

      let worker: string | undefined
      let chunks = 0
      let tokens = 0
      const decoder = new TextDecoder('utf-8', { fatal: true })
      const pay = async (update: PaymentUpdate | null): Promise<void> => {
        if (update == null || framed == null) return
        const out = framed
        await writer.run(async () => out.write(JobUpstream, { payment: { ...update, payerSignature: new Uint8Array(update.payerSignature) } }, { signal: jobSignal }))
      }
      while (true) {
        const remainingMs = Math.max(1, Math.floor(this.init.requestTimeoutMs - (performance.now() - startedMs)))
        const event = await framed.read(JobEvent, { signal: jobSignal, deadlineMs: remainingMs })
        if (event.routed != null) {
          if (chunks > 0) throw new InferenceError('worker_failed', 'the proxy switched workers mid-stream')
          if (!sealed.has(event.routed.worker)) throw new InferenceError('worker_failed', `the proxy routed to ${event.routed.worker}, a worker the job was not sealed to`)
          worker = event.routed.worker
          const c = (sealed.get(worker) as { candidate: WorkerCandidate }).candidate
          if (channel != null) payer = new JobPayer(channel, { promptPerM: c.pricePromptPerM, completionPerM: c.priceCompletionPerM, cachedBp: DEFAULT_CACHED_BP, reasoningBp: DEFAULT_REASONING_BP })
          continue
        }
        if (event.countersign != null) {
          if (channel != null) channel.countersigned(event.countersign.seqno, event.countersign.payeeSignature)
          continue
        }
        if (worker == null) throw new InferenceError('worker_failed', 'the proxy sent job data before naming the worker')
        const session = sealed.get(worker) as { opener: ResponseOpener, digest: Uint8Array }
        if (event.chunk != null) {
          // the token count opens only if it is the one the worker sealed
          const batch = parseChunks(decoder.decode(session.opener.open(event.chunk.seq, event.chunk.ciphertext, tokensAad(event.chunk.tokens))))
          if (event.chunk.tokens < tokens) throw new InferenceError('worker_failed', `the worker's token count went back from ${tokens} to ${event.chunk.tokens}`)
          tokens = event.chunk.tokens
          chunks++
          await pay(payer?.onTokens(tokens) ?? null)
          for (const chunk of batch) yield { type: 'chunk', chunk }
          continue
        }
        if (event.final == null) throw new InferenceError('worker_failed', 'the proxy sent an empty job event')
        const result = await verifyResult(event.final.result, worker, requestId)
        if (result.chunks !== chunks) throw new InferenceError('worker_failed', `the worker sent ${result.chunks} chunks but ${chunks} arrived: the stream was cut or altered`)
        if (!equals(result.requestDigest, session.digest)) throw new InferenceError('worker_failed', 'the worker answered a request other than the one this client sealed')
        const finishReason = (FINISH_REASONS.has(result.finishReason) ? result.finishReason : 'stop') as FinishReason
        const usage = usageFromWire(result.usage)
        if (usage.completionTokens < tokens) throw new InferenceError('worker_failed', `the worker signed ${usage.completionTokens} completion tokens after sealing a count of ${tokens}`)
        await pay(payer?.onFinal(usage) ?? null)
        const reported = event.final.cost
        if (payer != null && reported != null && reported.client !== payer.cost) {
          this.init.log('job %s: the proxy counts %s nanoTON, this client %s', requestId, reported.client, payer.cost)
        }
        done = true
        this.counts.completed++
        this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: 'ok' })
        this.init.metrics?.jobSeconds.observe({ side: 'client', phase: 'total' }, (performance.now() - startedMs) / 1000)
        this.init.metrics?.jobTokens.inc({ side: 'client', model: job.model, kind: 'prompt' }, usage.promptTokens)
        this.init.metrics?.jobTokens.inc({ side: 'client', model: job.model, kind: 'completion' }, usage.completionTokens)
        const out = framed
        await writer.run(async () => out.close({ signal: AbortSignal.timeout(JOB_CANCEL_GRACE_MS * 10) })).catch(() => {})
        completed = true
        void collectCountersigns(framed, JobEvent, channel)
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
            signed_result: Buffer.from(event.final.result?.result ?? new Uint8Array(0)).toString('base64'),
            ...(cost == null || payer == null ? {} : { cost_nanoton: { paid: cost.client, worker: cost.worker, commission: cost.commission, channel: payer.channel.address } }),
            timings_ms: {
              worker: { queue: result.queueMs, first_chunk: result.firstChunkMs, total: result.totalMs },
              proxy: { route: event.final.timings?.routeMs ?? 0, first_chunk: event.final.timings?.firstChunkMs ?? 0, total: event.final.timings?.totalMs ?? 0 },
              client: { total: Math.round(performance.now() - startedMs) }
            }
          }
        }
        return
      }
    } catch (err) {
      if (signal.aborted) {
        this.counts.cancelled++
        this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: 'cancelled' })
        throw new InferenceError('cancelled', 'the request was cancelled', { cause: err })
      }
      const failure = deadline.aborted
        ? new InferenceError('timeout', `no complete answer within ${this.init.requestTimeoutMs} ms`, { cause: err })
        : toInferenceError(err, 'the proxy')
      this.counts.failed++
      this.init.metrics?.jobs.inc({ side: 'client', model: job.model, result: failure.code })
      if (failure.code === 'worker_failed' && isProxyFault(err)) this.init.proxies.demote(proxy)
      if (err instanceof ChannelError) throw new InferenceError(err.reason === 'overspent' ? 'payment_required' : 'unavailable', `paying the proxy failed: ${err.message}`, { cause: err })
      throw failure
    } finally {
      done = true
      jobSignal.removeEventListener('abort', onAbort)
      this.init.proxies.jobEnded(proxy)
      // a consumer that stops iterating early (client went away) must not leave the job running
      if (framed != null && !completed && framed.stream.status !== 'closed') framed.abort(new Error('job ended'))
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
    const key = createHash('sha256').update(candidate.peerId).update(candidate.evidence).digest('hex')
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

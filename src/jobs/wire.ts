/**
 * The job protocols' messages, as every hop reads them: the clear header's
 * checks and its associated-data form (what the seal covers), error codes
 * between the wire and InferenceError, the token count a sealed frame
 * carries, and the worker's signed job result. Browser-safe.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { DeadlineError, FrameTooLargeError, MalformedMessageError, RemoteError, SealError, StreamClosedError } from '../errors.js'
import { ProtocolError } from '../p2p/framing.js'
import { ErrorCode } from '../gen/framing.pb.js'
import { sha256 as digest } from '../tee/seal.js'
import { JobKind, JobResult } from '../gen/job.pb.js'
import { JOB_MAX_DEADLINE_MS, MODEL_NAME_PATTERN } from '../p2p/constants.js'
import { InferenceError } from '../inference/types.js'
import type { InferenceChunk, InferenceErrorCode, InferenceKind, Usage } from '../inference/types.js'
import type { JobHeader, SignedResult, Usage as WireUsage } from '../gen/job.pb.js'
import type { PrivateKey } from '@libp2p/interface'

const REQUEST_ID_PATTERN = /^[0-9a-f]{32}$/
const RESULT_DOMAIN = new TextEncoder().encode('cocoon/job-result/v1\n')
/** Completion tokens a single job may ask for. */
export const MAX_JOB_TOKENS = 1_000_000

/** Checks a header from the wire; throws ProtocolError(BAD_REQUEST) naming the field. */
export function checkHeader (header: JobHeader | undefined, protocol: string): JobHeader {
  const bad = (what: string): never => { throw new ProtocolError(ErrorCode.BAD_REQUEST, `${protocol}: ${what}`) }
  if (header == null) return bad('the job has no header')
  if (!REQUEST_ID_PATTERN.test(header.requestId)) bad('request_id must be 32 lower-case hex digits')
  if (!MODEL_NAME_PATTERN.test(header.model)) bad(`model ${JSON.stringify(header.model.slice(0, 64))} is not a valid model name`)
  if (header.kind !== JobKind.CHAT && header.kind !== JobKind.COMPLETION) bad('unknown job kind')
  if (header.maxTokens < 1 || header.maxTokens > MAX_JOB_TOKENS) bad(`max_tokens must be 1-${MAX_JOB_TOKENS}`)
  if (header.deadlineMs < 1 || header.deadlineMs > JOB_MAX_DEADLINE_MS) bad(`deadline_ms must be 1-${JOB_MAX_DEADLINE_MS}`)
  return header
}

/** The header fields the seal covers: all but the deadline, which each hop lowers. */
export function headerAad (header: JobHeader): Uint8Array {
  return new TextEncoder().encode([
    'cocoon/job/v1', header.requestId, header.model, kindFromWire(header.kind), header.maxTokens,
    header.maxPricePromptPerM.toString(), header.maxPriceCompletionPerM.toString()
  ].join('\n'))
}

/** The per-job context of the seal's key derivation. */
export function sealContext (requestId: string): Uint8Array {
  return new TextEncoder().encode(`cocoon/job/${requestId}`)
}

export function kindToWire (kind: InferenceKind): JobKind {
  return kind === 'chat' ? JobKind.CHAT : JobKind.COMPLETION
}

export function kindFromWire (kind: JobKind): InferenceKind {
  return kind === JobKind.COMPLETION ? 'completion' : 'chat'
}

const TO_WIRE: Record<InferenceErrorCode, ErrorCode> = {
  bad_request: ErrorCode.BAD_REQUEST,
  too_large: ErrorCode.TOO_LARGE,
  price_too_low: ErrorCode.PRICE_TOO_LOW,
  model_unknown: ErrorCode.MODEL_UNKNOWN,
  no_capacity: ErrorCode.NO_CAPACITY,
  overloaded: ErrorCode.OVERLOADED,
  worker_failed: ErrorCode.WORKER_FAILED,
  // no proxy answers with it; listed before `unavailable`, which the wire code reads back as
  proxy_unreachable: ErrorCode.UNAVAILABLE,
  unavailable: ErrorCode.UNAVAILABLE,
  timeout: ErrorCode.TIMEOUT,
  cancelled: ErrorCode.CANCELLED,
  payment_required: ErrorCode.PAYMENT_REQUIRED
}

const FROM_WIRE: Partial<Record<string, InferenceErrorCode>> = {
  ...Object.fromEntries(Object.entries(TO_WIRE).map(([code, wire]) => [wire, code as InferenceErrorCode])),
  // a refused payment is the payer's problem to fix, like a missing one
  [ErrorCode.PAYMENT_REFUSED]: 'payment_required'
}

/** An InferenceError as a ProtocolError, to answer a peer with. */
export function toProtocolError (err: InferenceError): ProtocolError {
  return new ProtocolError(TO_WIRE[err.code], err.message, err.retryAfterMs)
}

/**
 * Any error from a job stream as an InferenceError. `upstream` says what the
 * other side is, for the messages ("the proxy", "worker 12D3…").
 */
export function toInferenceError (err: unknown, upstream: string): InferenceError {
  if (err instanceof InferenceError) return err
  if (err instanceof RemoteError) {
    const code = FROM_WIRE[err.remoteCode] ?? (err.remoteCode === ErrorCode.UNAUTHORIZED ? 'bad_request' : 'worker_failed')
    return new InferenceError(code, err.remoteMessage, { retryAfterMs: err.retryAfterMs, cause: err })
  }
  if (err instanceof ProtocolError) {
    return new InferenceError(FROM_WIRE[err.errorCode] ?? 'worker_failed', err.message, { retryAfterMs: err.retryAfterMs, cause: err })
  }
  if (err instanceof DeadlineError) return new InferenceError('timeout', `${upstream} sent nothing before the deadline`, { cause: err })
  if (err instanceof SealError) return new InferenceError('worker_failed', `${upstream} sent data that does not open: ${err.message}`, { cause: err })
  if (err instanceof FrameTooLargeError || err instanceof MalformedMessageError) {
    return new InferenceError('worker_failed', `${upstream} broke the protocol: ${err.message}`, { cause: err })
  }
  if (err instanceof StreamClosedError) return new InferenceError('worker_failed', `${upstream} closed the stream before the job ended`, { cause: err })
  return new InferenceError('worker_failed', `${upstream} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
}

export function usageToWire (usage: Usage): WireUsage {
  return { promptTokens: usage.promptTokens, cachedTokens: usage.cachedTokens, completionTokens: usage.completionTokens, reasoningTokens: usage.reasoningTokens }
}

export function usageFromWire (usage: WireUsage | undefined): Usage {
  return {
    promptTokens: usage?.promptTokens ?? 0,
    cachedTokens: usage?.cachedTokens ?? 0,
    completionTokens: usage?.completionTokens ?? 0,
    reasoningTokens: usage?.reasoningTokens ?? 0
  }
}

export function sha256 (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(digest(bytes))
}

function signedBytes (result: Uint8Array): Uint8Array {
  const out = new Uint8Array(RESULT_DOMAIN.byteLength + result.byteLength)
  out.set(RESULT_DOMAIN)
  out.set(result, RESULT_DOMAIN.byteLength)
  return out
}

/** The worker signs its job result with its libp2p key. */
export async function signResult (privateKey: PrivateKey, result: JobResult): Promise<SignedResult> {
  const encoded = JobResult.encode(result)
  const signature = await privateKey.sign(signedBytes(encoded))
  return { result: encoded, signature: new Uint8Array(signature) }
}

/**
 * Verifies a signed result against the worker's peer id (its public key is
 * inlined in ed25519 ids) and the job it belongs to. Throws InferenceError.
 */
export async function verifyResult (signed: SignedResult | undefined, worker: string, requestId: string): Promise<JobResult> {
  const fail = (what: string): never => { throw new InferenceError('worker_failed', `worker ${worker}: ${what}`) }
  if (signed == null) return fail('the final message has no result')
  let result: JobResult
  try {
    result = JobResult.decode(signed.result)
  } catch {
    return fail('the result does not decode')
  }
  const id = peerIdFromString(worker)
  const publicKey = id.publicKey ?? fail('its peer id does not carry a public key')
  if (!(await publicKey.verify(signedBytes(signed.result), signed.signature))) fail('the result signature does not verify')
  if (result.worker !== worker) fail('the result names another worker')
  if (result.requestId !== requestId) fail('the result is for another job')
  return result
}

/**
 * The clear token count a sealed frame travels with, as the seal's
 * associated data: the client opens the frame only with the count the
 * worker sealed, so no hop can inflate what it bills.
 */
export function tokensAad (tokens: number): Uint8Array {
  const out = new Uint8Array(TOKENS_AAD_PREFIX.byteLength + 4)
  out.set(TOKENS_AAD_PREFIX)
  new DataView(out.buffer).setUint32(TOKENS_AAD_PREFIX.byteLength, tokens)
  return out
}
const TOKENS_AAD_PREFIX = new TextEncoder().encode('cocoon/tokens/v1\n')

/** Completion tokens a batch of chunks stands for: one per chunk that carries text. */
export function contentTokens (chunks: InferenceChunk[]): number {
  let n = 0
  for (const chunk of chunks) {
    if (chunk.choices.some(c => ('text' in c && c.text !== '') || ('delta' in c && ((c.delta.content ?? '') !== '' || (c.delta.reasoning_content ?? '') !== '')))) n++
  }
  return n
}

/**
 * Reading an OpenAI-compatible upstream's answers: its base URL, its
 * server-sent events as choices, finish reasons and usage, and its errors
 * (bounded, with credentials redacted by the caller).
 */
import { ConfigError } from '../../../errors.js'
import { InferenceError } from '../../../inference/types.js'
import type { ChatChoiceDelta, CompletionChoiceDelta, FinishReason, InferenceRequest, Usage } from '../../../inference/types.js'

const FINISH_REASONS = new Set<string>(['stop', 'length', 'content_filter', 'tool_calls'])

export function normaliseBaseUrl (raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    throw new ConfigError('worker.upstream.url', `upstream url "${raw}" is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('worker.upstream.url', `upstream url: only http and https are supported, not ${url.protocol}`)
  // fetch refuses URLs with credentials, and they would end up in logs
  if (url.username !== '' || url.password !== '') throw new ConfigError('worker.upstream.url', `upstream url ${url.origin}${url.pathname}: put credentials in apiKey, not in the URL`)
  const path = url.pathname.replace(/\/+$/, '')
  return `${url.origin}${path === '' ? '/v1' : path}`
}

export function isRecord (v: unknown): v is Record<string, unknown> {
  return v != null && typeof v === 'object' && !Array.isArray(v)
}

/** One SSE `data:` payload as JSON; an `error` object in the stream is a failure (vLLM reports mid-stream errors so). */
export function parseEventData (data: string, redact: (s: string) => string): Record<string, unknown> {
  let payload: unknown
  try {
    payload = JSON.parse(data)
  } catch {
    throw new InferenceError('worker_failed', `upstream sent a malformed event: ${redact(data.slice(0, 200))}`)
  }
  if (!isRecord(payload)) throw new InferenceError('worker_failed', `upstream sent a malformed event: ${redact(data.slice(0, 200))}`)
  if (payload.error != null) {
    throw new InferenceError('worker_failed', `upstream failed mid-stream: ${redact(upstreamMessage(JSON.stringify(payload)).message)}`)
  }
  return payload
}

/** Keeps only the fields InferenceChunk carries; a choice with nothing to say is dropped. */
export function toChoice (kind: InferenceRequest['kind'], raw: unknown): ChatChoiceDelta | CompletionChoiceDelta | undefined {
  if (!isRecord(raw)) return undefined
  const index = typeof raw.index === 'number' ? raw.index : 0
  const finish = toFinishReason(raw.finish_reason)
  if (kind === 'completion') {
    const text = typeof raw.text === 'string' ? raw.text : ''
    return text === '' && finish == null ? undefined : { index, text, finish_reason: finish }
  }
  const d = isRecord(raw.delta) ? raw.delta : {}
  const delta: ChatChoiceDelta['delta'] = {}
  if (d.role === 'assistant') delta.role = 'assistant'
  if (typeof d.content === 'string') delta.content = d.content
  // vLLM and SGLang call it reasoning_content; newer vLLM also `reasoning`
  const reasoning = typeof d.reasoning_content === 'string' ? d.reasoning_content : d.reasoning
  if (typeof reasoning === 'string') delta.reasoning_content = reasoning
  if (Object.keys(delta).length === 0 && finish == null) return undefined
  return { index, delta, finish_reason: finish }
}

export function toFinishReason (v: unknown): FinishReason | null {
  if (v == null) return null
  if (typeof v === 'string' && FINISH_REASONS.has(v)) return v as FinishReason
  if (v === 'function_call') return 'tool_calls'
  // anything else a server invents (e.g. 'eos', 'abort') still ends the choice
  return 'stop'
}

export function toUsage (v: unknown): Usage | undefined {
  if (!isRecord(v) || (typeof v.prompt_tokens !== 'number' && typeof v.completion_tokens !== 'number')) return undefined
  const count = (n: unknown): number => (typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.floor(n) : 0)
  const promptTokens = count(v.prompt_tokens)
  const completionTokens = count(v.completion_tokens)
  const cached = isRecord(v.prompt_tokens_details) ? count(v.prompt_tokens_details.cached_tokens) : 0
  const reasoning = isRecord(v.completion_tokens_details) ? count(v.completion_tokens_details.reasoning_tokens) : 0
  return { promptTokens, cachedTokens: Math.min(cached, promptTokens), completionTokens, reasoningTokens: Math.min(reasoning, completionTokens) }
}

/**
 * The message in an upstream error body, whichever of the usual shapes it
 * has: OpenAI/llama.cpp `{error: {message, param}}`, Ollama `{error: "..."}`,
 * vLLM `{message}`, FastAPI `{detail}`; otherwise the start of the text.
 */
export function upstreamMessage (text: string): { message: string, param: string | null } {
  let body: unknown
  try {
    body = JSON.parse(text)
  } catch {
    return { message: text.trim().slice(0, 500), param: null }
  }
  const pick = (v: unknown): string | undefined => typeof v === 'string' ? v : v != null ? JSON.stringify(v) : undefined
  if (isRecord(body)) {
    const err = body.error
    if (isRecord(err)) return { message: (pick(err.message) ?? JSON.stringify(err)).slice(0, 500), param: typeof err.param === 'string' ? err.param : null }
    const message = pick(err) ?? pick(body.message) ?? pick(body.detail)
    if (message != null) return { message: message.slice(0, 500), param: typeof body.param === 'string' ? body.param : null }
  }
  return { message: text.trim().slice(0, 500), param: null }
}

export async function readLimited (res: Response, max: number): Promise<string> {
  if (res.body == null) return ''
  const reader = res.body.getReader()
  const parts: Uint8Array[] = []
  let size = 0
  try {
    while (size < max) {
      const { done, value } = await reader.read()
      if (done) break
      parts.push(value)
      size += value.byteLength
    }
  } catch {
    // a body cut short still tells what arrived
  } finally {
    await reader.cancel().catch(() => {})
  }
  return Buffer.concat(parts).subarray(0, max).toString('utf8')
}

/** Retry-After in seconds (the form OpenAI-compatible servers send), as ms; 0 when absent or a date. */
export function retryAfter (header: string | null): number {
  const seconds = Number(header)
  return header != null && header.trim() !== '' && Number.isFinite(seconds) && seconds > 0 ? Math.round(seconds * 1000) : 0
}

/** The errno-style code of a fetch failure: undici wraps it as `cause`, happy-eyeballs in an AggregateError. */
export function errorCode (err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 6 && isRecordLike(e); depth++) {
    if (typeof e.code === 'string' && e.code !== '') return e.code
    if (Array.isArray(e.errors) && e.errors.length > 0) e = e.errors[0]
    else e = e.cause
  }
  return undefined
}

export function isRecordLike (v: unknown): v is { code?: unknown, errors?: unknown, cause?: unknown } {
  return v != null && typeof v === 'object'
}

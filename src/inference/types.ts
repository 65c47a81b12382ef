/**
 * The shapes every inference path shares: what a worker backend is asked to
 * do, the OpenAI-shaped chunks it yields, the usage it reports at the end,
 * and the typed error any hop raises. The client's HTTP API, the sealed job
 * protocols and the backends all speak these.
 */

/** Which OpenAI endpoint a job came from. */
export type InferenceKind = 'chat' | 'completion'

/** Token counts of one job, as OpenAI reports them. */
export interface Usage {
  promptTokens: number
  /** Prompt tokens served from a cache (a subset of promptTokens). */
  cachedTokens: number
  completionTokens: number
  /** Completion tokens spent on reasoning (a subset of completionTokens). */
  reasoningTokens: number
}

export type FinishReason = 'stop' | 'length' | 'content_filter' | 'tool_calls'

/**
 * One streamed choice delta, OpenAI-shaped but without the envelope fields
 * (`id`, `object`, `created`, `model`) that the client fills in.
 * Chat: `{ index, delta: { role?, content?, reasoning_content? }, finish_reason }`.
 * Completion: `{ index, text, finish_reason }`.
 */
export interface ChatChoiceDelta {
  index: number
  delta: { role?: 'assistant', content?: string, reasoning_content?: string }
  finish_reason: FinishReason | null
}

export interface CompletionChoiceDelta {
  index: number
  text: string
  finish_reason: FinishReason | null
}

export interface InferenceChunk {
  choices: Array<ChatChoiceDelta | CompletionChoiceDelta>
}

/**
 * A request as the worker's backend receives it: the OpenAI request body
 * (already validated by the client against the allowlist of fields, `stream`
 * and `stream_options` removed) plus the bounds the network enforces.
 */
export interface InferenceRequest {
  kind: InferenceKind
  /** The model name as announced (the backend maps it to its own). */
  model: string
  /** The OpenAI body: messages or prompt, temperature, seed, stop, ... */
  body: Record<string, unknown>
  /** Completion tokens at most (the client's max_tokens, capped by the worker). */
  maxTokens: number
  /** Aborted when the requester cancels or the deadline passes: stop generating at once. */
  signal: AbortSignal
}

export type BackendEvent =
  | { type: 'chunk', chunk: InferenceChunk }
  | { type: 'done', usage: Usage, finishReason: FinishReason }

/** A model a backend can serve. */
export interface BackendModel {
  name: string
  contextLength: number
  /** A file whose sha256 is announced as the weights hash (llama), if any. */
  weightsPath?: string
  /** True for generated random-weight test models: their output is noise. */
  synthetic: boolean
  /** One line for logs and /v1/models. */
  description: string
}

export interface BackendStatus {
  available: boolean
  /** Why not available (upstream down, model loading), or ''. */
  detail: string
  /** Jobs running now. */
  running: number
  /** Jobs finished / failed / cancelled since start. */
  completed: number
  failed: number
  cancelled: number
  /** Completion tokens produced since start (cancelled jobs included). */
  tokens: number
}

/**
 * A source of completions. `generate` yields chunks and then exactly one
 * `done` event; it stops promptly (well within 100 ms) when `signal` aborts,
 * throwing an `InferenceError('cancelled')`. Backend failures are thrown as
 * `InferenceError('worker_failed' | 'unavailable' | 'bad_request')`.
 */
export interface InferenceBackend {
  readonly kind: 'llama' | 'openai' | 'synthetic'
  /** Loads models, probes the upstream; progress goes to `onProgress`. */
  start(onProgress?: (line: string) => void): Promise<void>
  stop(): Promise<void>
  models(): BackendModel[]
  status(): BackendStatus
  /** Emits 'availability' when available() flips (upstream up/down). */
  addEventListener?(type: 'availability', listener: () => void): void
  removeEventListener?(type: 'availability', listener: () => void): void
  generate(request: InferenceRequest): AsyncIterable<BackendEvent>
}

/** Stable error codes across the HTTP API, the job protocols and backends. */
export type InferenceErrorCode =
  | 'bad_request'
  | 'price_too_low'
  | 'model_unknown'
  | 'no_capacity'
  | 'overloaded'
  | 'worker_failed'
  | 'proxy_unreachable'
  | 'unavailable'
  | 'timeout'
  | 'cancelled'
  | 'too_large'
  | 'payment_required'

/** HTTP status for each code, as the OpenAI-compatible API answers. */
export const HTTP_STATUS: Record<InferenceErrorCode, number> = {
  bad_request: 400,
  price_too_low: 402,
  payment_required: 402,
  model_unknown: 404,
  too_large: 413,
  overloaded: 429,
  worker_failed: 502,
  proxy_unreachable: 503,
  no_capacity: 503,
  unavailable: 503,
  timeout: 504,
  cancelled: 499
}

export class InferenceError extends Error {
  readonly code: InferenceErrorCode
  readonly retryAfterMs: number
  /** For bad_request: the request field at fault (OpenAI's `param`). */
  readonly param: string | null

  constructor (code: InferenceErrorCode, message: string, options: { retryAfterMs?: number, param?: string | null, cause?: unknown } = {}) {
    super(message, { cause: options.cause })
    this.name = 'InferenceError'
    this.code = code
    this.retryAfterMs = options.retryAfterMs ?? 0
    this.param = options.param ?? null
  }

  get httpStatus (): number {
    return HTTP_STATUS[this.code]
  }
}

export function emptyUsage (): Usage {
  return { promptTokens: 0, cachedTokens: 0, completionTokens: 0, reasoningTokens: 0 }
}

/** OpenAI's JSON form of a usage record. */
export function usageToOpenAI (usage: Usage): Record<string, unknown> {
  return {
    prompt_tokens: usage.promptTokens,
    completion_tokens: usage.completionTokens,
    total_tokens: usage.promptTokens + usage.completionTokens,
    prompt_tokens_details: { cached_tokens: usage.cachedTokens },
    completion_tokens_details: { reasoning_tokens: usage.reasoningTokens }
  }
}

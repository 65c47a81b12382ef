/**
 * What the client's API hands to the network and gets back: a job, the
 * events of its answer, the models on offer. Shared by the HTTP API and the
 * job client (browser-safe: types only).
 */
import type { FinishReason, InferenceChunk, InferenceKind, Usage } from '../../inference/types.js'

export interface ApiJob {
  /** Random, per HTTP request; also in the `x-request-id` header and the response ids. */
  requestId: string
  kind: InferenceKind
  model: string
  /** The validated OpenAI body without stream / stream_options. */
  body: Record<string, unknown>
  maxTokens: number | null
}

export type ApiEvent =
  | { type: 'chunk', chunk: InferenceChunk }
  /** `cocoon`: extra information (worker, timings, cost) added to the final response as a top-level `cocoon` field. */
  | { type: 'done', usage: Usage, finishReason: FinishReason, cocoon?: Record<string, unknown>, cost?: ApiCost }

/** What a paid job cost, nanoTON as decimal strings: the client's payment, the worker's share, the proxy's commission. */
export interface ApiCost {
  client: string
  worker: string | null
  commission: string | null
}

export interface ApiModel {
  id: string
  created: number
  workers: number
  contextLength: number
  pricePromptPerM: { min: string, max: string }
  priceCompletionPerM: { min: string, max: string }
  /** The proxy's commission, included in the prices (basis points). */
  commissionBp?: number
  synthetic: boolean
  description: string
}

export interface CompletionService {
  models(signal: AbortSignal): Promise<ApiModel[]>
  /** Throws InferenceError before the first event (→ HTTP error) or during the stream (→ SSE error event). */
  run(job: ApiJob, signal: AbortSignal): AsyncIterable<ApiEvent>
}

/**
 * Shaping what the network sends back as OpenAI does: one JSON answer
 * assembled from the deltas, or server-sent events as they arrive (with
 * `usage` and `[DONE]` where the SDKs expect them, and an `error` event for a
 * failure mid-stream).
 */
import { InferenceError, usageToOpenAI } from '../../inference/types.js'
import { inferenceErrorBody, sendJson, writable } from './http-io.js'
import type { ApiCost, ApiEvent, ApiJob, ApiModel, CompletionService } from './api-types.js'
import type { ParsedRequest } from '../../inference/openai-request.js'
import type { ChatChoiceDelta, CompletionChoiceDelta, FinishReason } from '../../inference/types.js'
import type { ServerResponse } from 'node:http'

/** A paid job's usage also says what it cost (`cost_nanoton`). */
function withCost (usage: Record<string, unknown>, cost: ApiCost | undefined): Record<string, unknown> {
  return cost === undefined ? usage : { ...usage, cost_nanoton: cost }
}

export function toOpenAIModel (m: ApiModel): Record<string, unknown> {
  return {
    id: m.id,
    object: 'model',
    created: m.created,
    owned_by: 'cocoon',
    workers: m.workers,
    context_length: m.contextLength,
    pricing: {
      prompt_per_m_nanoton: { min: m.pricePromptPerM.min, max: m.pricePromptPerM.max },
      completion_per_m_nanoton: { min: m.priceCompletionPerM.min, max: m.priceCompletionPerM.max },
      ...(m.commissionBp === undefined ? {} : { commission_bp: m.commissionBp })
    },
    synthetic: m.synthetic,
    description: m.description
  }
}

/** One choice of a non-streamed answer, assembled from its deltas. */
interface Assembled { content: string, reasoning: string, finishReason: FinishReason | null }

function isChatDelta (choice: ChatChoiceDelta | CompletionChoiceDelta): choice is ChatChoiceDelta {
  return 'delta' in choice
}

/** The error to report: once we aborted the job, whatever the service throws follows from our reason. */
function failure (err: unknown, signal: AbortSignal): unknown {
  return signal.aborted && signal.reason instanceof InferenceError ? signal.reason : err
}

export async function answer (service: CompletionService, job: ApiJob, parsed: ParsedRequest, res: ServerResponse, signal: AbortSignal, log: (line: string) => void): Promise<void> {
  let iterator: AsyncIterator<ApiEvent>
  let first: IteratorResult<ApiEvent>
  try {
    iterator = service.run(job, signal)[Symbol.asyncIterator]()
    // The first event is awaited before any byte is written, so an early failure is a plain HTTP error.
    first = await iterator.next()
  } catch (err) {
    throw failure(err, signal)
  }
  try {
    if (parsed.stream) await streamEvents(job, parsed, res, signal, iterator, first, log)
    else await collectEvents(job, res, signal, iterator, first)
  } finally {
    // Stops a service generator we left early (client gone, events after 'done').
    try { void Promise.resolve(iterator.return?.()).catch(() => {}) } catch {}
  }
}

async function collectEvents (job: ApiJob, res: ServerResponse, signal: AbortSignal, iterator: AsyncIterator<ApiEvent>, first: IteratorResult<ApiEvent>): Promise<void> {
  const choices = new Map<number, Assembled>()
  let result = first
  try {
    while (result.done !== true) {
      const event = result.value
      if (event.type === 'done') {
        const created = Math.floor(Date.now() / 1000)
        if (!choices.has(0)) choices.set(0, { content: '', reasoning: '', finishReason: null })
        const list = [...choices.entries()].sort(([a], [b]) => a - b).map(([index, c]) => {
          const finishReason = c.finishReason ?? event.finishReason
          if (job.kind === 'completion') return { index, text: c.content, finish_reason: finishReason, logprobs: null }
          const message: Record<string, unknown> = { role: 'assistant', content: c.content }
          if (c.reasoning !== '') message.reasoning_content = c.reasoning
          return { index, message, finish_reason: finishReason, logprobs: null }
        })
        sendJson(res, 200, {
          id: `${job.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${job.requestId}`,
          object: job.kind === 'chat' ? 'chat.completion' : 'text_completion',
          created,
          model: job.model,
          choices: list,
          usage: withCost(usageToOpenAI(event.usage), event.cost),
          ...(event.cocoon !== undefined ? { cocoon: event.cocoon } : {})
        })
        return
      }
      for (const choice of event.chunk.choices) {
        const c = choices.get(choice.index) ?? { content: '', reasoning: '', finishReason: null }
        choices.set(choice.index, c)
        if (isChatDelta(choice)) {
          c.content += choice.delta.content ?? ''
          c.reasoning += choice.delta.reasoning_content ?? ''
        } else {
          c.content += choice.text
        }
        if (choice.finish_reason !== null) c.finishReason = choice.finish_reason
      }
      result = await iterator.next()
    }
  } catch (err) {
    throw failure(err, signal)
  }
  throw new InferenceError('worker_failed', 'the inference ended without a result')
}

async function streamEvents (job: ApiJob, parsed: ParsedRequest, res: ServerResponse, signal: AbortSignal, iterator: AsyncIterator<ApiEvent>, first: IteratorResult<ApiEvent>, log: (line: string) => void): Promise<void> {
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no'
  })
  const envelope = {
    id: `${job.kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${job.requestId}`,
    object: job.kind === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    created: Math.floor(Date.now() / 1000),
    model: job.model
  }
  const send = async (data: string): Promise<void> => {
    if (res.destroyed || res.writableEnded) return
    if (!res.write(`data: ${data}\n\n`)) await writable(res)
  }
  // OpenAI sends `usage: null` on every chunk when usage was asked for.
  const usageField = parsed.includeUsage ? { usage: null } : {}
  let finished = false
  let result = first
  try {
    while (result.done !== true && !signal.aborted) {
      const event = result.value
      if (event.type === 'done') {
        if (!finished) {
          // The service reported the finish reason only in 'done': clients expect it on a last chunk.
          const choice = job.kind === 'chat' ? { index: 0, delta: {}, finish_reason: event.finishReason } : { index: 0, text: '', finish_reason: event.finishReason }
          await send(JSON.stringify({ ...envelope, choices: [choice], ...usageField }))
        }
        if (parsed.includeUsage) {
          await send(JSON.stringify({ ...envelope, choices: [], usage: withCost(usageToOpenAI(event.usage), event.cost), ...(event.cocoon !== undefined ? { cocoon: event.cocoon } : {}) }))
        }
        await send('[DONE]')
        res.end()
        return
      }
      if (event.chunk.choices.some(c => c.index === 0 && c.finish_reason !== null)) finished = true
      await send(JSON.stringify({ ...envelope, choices: event.chunk.choices, ...usageField }))
      result = await iterator.next()
    }
    if (!signal.aborted) throw new InferenceError('worker_failed', 'the inference ended without a result')
  } catch (err) {
    const e = failure(err, signal)
    const body = e instanceof InferenceError
      ? inferenceErrorBody(e)
      : { message: 'internal server error', type: 'server_error', param: null, code: 'internal_error' }
    if (!(e instanceof InferenceError)) log(`api ${job.requestId}: internal error mid-stream: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`)
    else if (e.httpStatus >= 500) log(`api ${job.requestId}: ${e.code} mid-stream: ${e.message}`)
    // The SDKs raise an APIError for a data event carrying `error`.
    await send(JSON.stringify({ error: body }))
  }
  if (!res.writableEnded) res.end()
}

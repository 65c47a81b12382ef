/**
 * What the llama.cpp backend reads from an OpenAI request (sampling, chat
 * history, prompt, stop sequences) and the small machinery between
 * node-llama-cpp's callbacks and the backend's event stream.
 */
import { InferenceError } from '../../../inference/types.js'
import type { ChatHistoryItem } from 'node-llama-cpp'

export const MAX_STOP_SEQUENCES = 16

export interface Sampling {
  temperature: number
  topP?: number
  seed?: number
  stop: string[]
  presencePenalty: number
  frequencyPenalty: number
}

/** What the node-llama-cpp call reports back when it ends. */
export interface RunResult {
  stopReason: string
}

export interface RunOptions {
  signal: AbortSignal
  maxTokens: number
  sampling: Sampling
  /** Each piece of text as generated; `tokens` counts reasoning tokens (0 where unknown). */
  onPiece: (text: string, reasoning: boolean, tokens: number) => void
}

/** Options LlamaChat and LlamaCompletion share. */
export function commonOptions (o: RunOptions): {
  signal: AbortSignal
  maxTokens: number
  temperature: number
  topP?: number
  seed?: number
  repeatPenalty: false | { penalty: number, presencePenalty: number, frequencyPenalty: number, penalizeNewLine: boolean }
} {
  const s = o.sampling
  return {
    signal: o.signal,
    maxTokens: o.maxTokens,
    temperature: s.temperature,
    ...(s.topP === undefined ? {} : { topP: s.topP }),
    ...(s.seed === undefined ? {} : { seed: s.seed }),
    // node-llama-cpp applies a 1.1 repeat penalty unless told not to; OpenAI has none.
    repeatPenalty: s.presencePenalty === 0 && s.frequencyPenalty === 0
      ? false
      : { penalty: 1, presencePenalty: s.presencePenalty, frequencyPenalty: s.frequencyPenalty, penalizeNewLine: true }
  }
}

export function cancelled (): InferenceError {
  return new InferenceError('cancelled', 'the job was cancelled')
}

export function badRequest (param: string, message: string): InferenceError {
  return new InferenceError('bad_request', message, { param })
}

function optionalNumber (body: Record<string, unknown>, key: string, min: number, max: number): number | undefined {
  const v = body[key]
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw badRequest(key, `${key} must be a number in [${min}, ${max}]`)
  return v
}

export function parseSampling (body: Record<string, unknown>): Sampling {
  // OpenAI's defaults: temperature 1, top_p 1.
  const temperature = optionalNumber(body, 'temperature', 0, 2) ?? 1
  const topP = optionalNumber(body, 'top_p', 0, 1)
  let seed: number | undefined
  if (body.seed !== undefined && body.seed !== null) {
    if (typeof body.seed !== 'number' || !Number.isSafeInteger(body.seed)) throw badRequest('seed', 'seed must be an integer')
    seed = ((body.seed % 2 ** 32) + 2 ** 32) % 2 ** 32 // llama.cpp takes a uint32
  }
  let stop: string[] = []
  if (typeof body.stop === 'string') stop = [body.stop]
  else if (Array.isArray(body.stop)) {
    if (body.stop.length > MAX_STOP_SEQUENCES || !body.stop.every(s => typeof s === 'string')) throw badRequest('stop', `stop must be a string or at most ${MAX_STOP_SEQUENCES} strings`)
    stop = body.stop as string[]
  } else if (body.stop !== undefined && body.stop !== null) throw badRequest('stop', 'stop must be a string or an array of strings')
  return {
    temperature,
    // top_p 1 keeps every token: the same as not filtering.
    ...(topP === undefined || topP >= 1 ? {} : { topP: Math.max(topP, 1e-6) }),
    ...(seed === undefined ? {} : { seed }),
    stop: stop.filter(s => s !== ''),
    presencePenalty: optionalNumber(body, 'presence_penalty', -2, 2) ?? 0,
    frequencyPenalty: optionalNumber(body, 'frequency_penalty', -2, 2) ?? 0
  }
}

function messageText (content: unknown, i: number): string {
  if (content === undefined || content === null) return ''
  if (typeof content === 'string') return content
  if (Array.isArray(content)) {
    return content.map((part: unknown) => {
      if (typeof part === 'object' && part !== null && (part as { type?: unknown }).type === 'text' && typeof (part as { text?: unknown }).text === 'string') {
        return (part as { text: string }).text
      }
      throw badRequest('messages', `messages[${i}].content: only text parts are supported`)
    }).join('')
  }
  throw badRequest('messages', `messages[${i}].content must be a string or an array of text parts`)
}

/** OpenAI messages as node-llama-cpp chat history, ending with the model's turn to answer. */
export function toChatHistory (messages: unknown): ChatHistoryItem[] {
  if (!Array.isArray(messages) || messages.length === 0) throw badRequest('messages', 'messages must be a non-empty array')
  const history: ChatHistoryItem[] = messages.map((m: unknown, i): ChatHistoryItem => {
    if (typeof m !== 'object' || m === null) throw badRequest('messages', `messages[${i}] must be an object`)
    const { role, content } = m as { role?: unknown, content?: unknown }
    const text = messageText(content, i)
    switch (role) {
      case 'system':
      case 'developer':
        return { type: 'system', text }
      case 'user':
        return { type: 'user', text }
      case 'assistant':
        return { type: 'model', response: text === '' ? [] : [text] }
      default:
        throw badRequest('messages', `messages[${i}].role must be system, developer, user or assistant (got ${JSON.stringify(role)})`)
    }
  })
  // As OpenAI does: a new assistant turn, even after an assistant message.
  history.push({ type: 'model', response: [] })
  return history
}

export function parsePrompt (prompt: unknown): string {
  if (typeof prompt === 'string') return prompt
  if (Array.isArray(prompt) && prompt.length === 1 && typeof prompt[0] === 'string') return prompt[0]
  throw badRequest('prompt', 'prompt must be a string')
}

/**
 * Finds the first stop sequence in a stream of text pieces. Text that could
 * still be the start of a stop sequence is held back until it is decided, so
 * nothing of a stop sequence is ever emitted.
 */
export class StopScanner {
  private pending = ''
  constructor (private readonly stops: readonly string[]) {}

  push (text: string): { emit: string, matched: boolean } {
    if (this.stops.length === 0) return { emit: text, matched: false }
    this.pending += text
    let first = -1
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop)
      if (at >= 0 && (first < 0 || at < first)) first = at
    }
    if (first >= 0) {
      const emit = this.pending.slice(0, first)
      this.pending = ''
      return { emit, matched: true }
    }
    // Hold the longest tail that some stop sequence starts with.
    let hold = 0
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, this.pending.length); n > hold; n--) {
        if (this.pending.endsWith(stop.slice(0, n))) { hold = n; break }
      }
    }
    const emit = this.pending.slice(0, this.pending.length - hold)
    this.pending = this.pending.slice(this.pending.length - hold)
    return { emit, matched: false }
  }

  /** The held-back text, once no stop sequence can follow (the generation ended). */
  flush (): string {
    const rest = this.pending
    this.pending = ''
    return rest
  }
}

export interface Piece { text: string, reasoning: boolean }
export interface End extends RunResult { completionTokens: number, reasoningTokens: number }

/** Bridges node-llama-cpp's callbacks to the generator: pieces in order, then the end or an error. */
export class PieceStream {
  private readonly pieces: Piece[] = []
  private ending: { ok: true, end: End } | { ok: false, error: unknown } | null = null
  private wake: (() => void) | null = null

  push (piece: Piece): void { this.pieces.push(piece); this.notify() }
  end (end: End): void { this.ending ??= { ok: true, end }; this.notify() }
  fail (error: unknown): void { this.ending ??= { ok: false, error }; this.notify() }

  private notify (): void {
    const wake = this.wake
    this.wake = null
    wake?.()
  }

  /** The next piece or the end; rejects with `cancelled` as soon as `signal` aborts. */
  async next (signal: AbortSignal): Promise<Piece | End> {
    while (true) {
      if (signal.aborted) throw cancelled()
      const piece = this.pieces.shift()
      if (piece !== undefined) return piece
      if (this.ending !== null) {
        if (this.ending.ok) return this.ending.end
        throw this.ending.error
      }
      await new Promise<void>(resolve => {
        const onAbort = (): void => { this.wake = null; resolve() }
        signal.addEventListener('abort', onAbort, { once: true })
        this.wake = () => { signal.removeEventListener('abort', onAbort); resolve() }
      })
    }
  }
}

/**
 * A deterministic inference backend for tests and benchmarks, in the manner
 * of COCOON's benchmark server: each job streams N chunks of M bytes of
 * made-up words at a set pace, then reports usage. No model runs, so a
 * benchmark measures the network and not the GPU.
 *
 * The text is a function of the request alone (kind, model, messages or
 * prompt, seed), so the same request always yields the same chunks.
 */
import { createHash } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { InferenceError } from '../../../inference/types.js'
import type {
  BackendEvent, BackendModel, BackendStatus, FinishReason, InferenceBackend, InferenceChunk, InferenceRequest, Usage
} from '../../../inference/types.js'

/** The knobs that shape each job; `configure()` changes them for later jobs. */
export interface SyntheticTuning {
  /** Chunks per job, capped by the request's maxTokens (one chunk = one "token"). Default 50. */
  chunks: number
  /** Bytes of text in each chunk. Default 128. */
  chunkBytes: number
  /** Pause between chunks, ms. Default 0 (the event loop is still yielded to between chunks). */
  intervalMs: number
  /** Pause before the first chunk (simulated prefill), ms. Default 0. */
  firstChunkDelayMs: number
  /** Beyond this many running jobs a new one fails with 'overloaded'. Default unlimited. */
  maxConcurrent: number
  /**
   * Test hook: a job throws InferenceError('worker_failed') after sending
   * this many chunks (0: before the first). Default never.
   */
  failAfterChunks: number | undefined
}

export interface SyntheticBackendInit extends Partial<SyntheticTuning> {
  models: Array<{ name: string, contextLength: number }>
}

const DEFAULTS: SyntheticTuning = {
  chunks: 50,
  chunkBytes: 128,
  intervalMs: 0,
  firstChunkDelayMs: 0,
  maxConcurrent: Infinity,
  failAfterChunks: undefined
}

/** Made-up but word-like, so streamed output is readable in logs and demos. */
const WORDS = [
  'amber', 'basalt', 'cobalt', 'delta', 'ember', 'fjord', 'garnet', 'harbor',
  'indigo', 'jasper', 'kelp', 'lumen', 'marble', 'nectar', 'onyx', 'pylon',
  'quartz', 'ripple', 'sable', 'tundra', 'umber', 'vortex', 'willow', 'xenon',
  'yarrow', 'zephyr', 'a', 'of', 'the', 'and', 'to', 'in'
]

export class SyntheticBackend implements InferenceBackend {
  readonly kind = 'synthetic' as const
  private readonly modelList: BackendModel[]
  private tuning: SyntheticTuning
  private readonly events = new EventTarget()
  private available = true
  private detail = ''
  private stopping = stopController()
  private readonly counts = { running: 0, completed: 0, failed: 0, cancelled: 0, tokens: 0 }

  constructor (init: SyntheticBackendInit) {
    const { models, ...tuning } = init
    this.tuning = checkTuning({ ...DEFAULTS, ...dropUndefined(tuning) })
    this.modelList = models.map(m => ({
      name: m.name,
      contextLength: m.contextLength,
      synthetic: true,
      description: `synthetic fixed-output test backend (${this.tuning.chunks} chunks of ${this.tuning.chunkBytes} bytes)`
    }))
  }

  async start (onProgress?: (line: string) => void): Promise<void> {
    this.stopping = stopController()
    onProgress?.(`synthetic backend: ${this.modelList.map(m => m.name).join(', ')}`)
  }

  /** Running jobs end with InferenceError('unavailable'). */
  async stop (): Promise<void> {
    this.stopping.abort()
  }

  models (): BackendModel[] {
    return this.modelList.map(m => ({ ...m }))
  }

  status (): BackendStatus {
    return { available: this.available, detail: this.detail, ...this.counts }
  }

  /** Changes the tuning for jobs that start from now on (running jobs keep theirs). */
  configure (changes: Partial<SyntheticTuning>): void {
    this.tuning = checkTuning({ ...this.tuning, ...changes })
  }

  /**
   * Test hook: pretend the backend went down (or came back), as an upstream
   * would. While down, jobs fail with 'unavailable'. Emits 'availability'.
   */
  setAvailable (available: boolean, detail = available ? '' : 'marked unavailable by a test'): void {
    const flipped = available !== this.available
    this.available = available
    this.detail = available ? '' : detail
    if (flipped) this.events.dispatchEvent(new Event('availability'))
  }

  /**
   * Simulator hook: a worker that became `factor` times slower (an
   * overloaded or throttled GPU); jobs already running keep their pace.
   */
  slowDown (factor: number): void {
    if (!(factor >= 1)) throw new RangeError(`synthetic backend: slow-down factor must be >= 1, got ${factor}`)
    this.tuning = { ...this.tuning, intervalMs: this.tuning.intervalMs * factor, firstChunkDelayMs: this.tuning.firstChunkDelayMs * factor }
  }

  addEventListener (type: 'availability', listener: () => void): void {
    this.events.addEventListener(type, listener)
  }

  removeEventListener (type: 'availability', listener: () => void): void {
    this.events.removeEventListener(type, listener)
  }

  async * generate (request: InferenceRequest): AsyncGenerator<BackendEvent> {
    if (!this.modelList.some(m => m.name === request.model)) {
      throw new InferenceError('model_unknown', `model ${request.model} is not served here`)
    }
    if (!this.available) throw new InferenceError('unavailable', `synthetic backend unavailable: ${this.detail}`)
    const t = this.tuning
    if (this.counts.running >= t.maxConcurrent) {
      throw new InferenceError('overloaded', `synthetic backend is running ${this.counts.running} jobs, its limit`, { retryAfterMs: 100 })
    }
    if (request.signal.aborted) throw cancelled()

    this.counts.running++
    // Set on every way out; a consumer that stops iterating early leaves it
    // unset, and an abandoned job is counted as cancelled.
    let outcome: 'completed' | 'failed' | 'cancelled' | undefined
    let sent = 0
    const stopping = this.stopping.signal
    try {
      const total = Math.max(0, Math.min(t.chunks, Math.floor(request.maxTokens)))
      const finishReason: FinishReason = request.maxTokens < t.chunks ? 'length' : 'stop'
      const words = new WordStream(requestSeed(request))
      const began = performance.now()
      for (let i = 0; i < total; i++) {
        if (t.failAfterChunks !== undefined && sent >= t.failAfterChunks) {
          throw new InferenceError('worker_failed', `synthetic backend failed after ${sent} chunks (failAfterChunks)`)
        }
        // Paced from the job's start rather than the previous chunk, so a
        // slow consumer does not stretch the whole job.
        await pause(began + t.firstChunkDelayMs + i * t.intervalMs - performance.now(), request.signal, stopping)
        // counted before the yield: a consumer that stops here has still received it
        sent++
        yield { type: 'chunk', chunk: contentChunk(request.kind, words.next(t.chunkBytes), i === 0) }
      }
      if (t.failAfterChunks !== undefined && sent >= t.failAfterChunks) {
        throw new InferenceError('worker_failed', `synthetic backend failed after ${sent} chunks (failAfterChunks)`)
      }
      if (request.signal.aborted) throw cancelled()
      yield { type: 'chunk', chunk: finalChunk(request.kind, finishReason, total === 0) }
      const usage: Usage = { promptTokens: promptTokenEstimate(request), cachedTokens: 0, completionTokens: sent, reasoningTokens: 0 }
      outcome = 'completed'
      yield { type: 'done', usage, finishReason }
    } catch (err) {
      outcome = err instanceof InferenceError && err.code === 'cancelled' ? 'cancelled' : 'failed'
      throw err
    } finally {
      this.counts.running--
      this.counts.tokens += sent
      this.counts[outcome ?? 'cancelled']++
    }
  }
}

/**
 * A deterministic prompt size: a quarter of the prompt's UTF-8 bytes,
 * rounded up, at least 1 (about what BPE tokenizers give for English).
 * Used where no tokenizer is at hand.
 */
export function promptTokenEstimate (request: Pick<InferenceRequest, 'kind' | 'body'>): number {
  let bytes = 0
  let tokenIds = 0
  const add = (v: unknown): void => {
    if (typeof v === 'string') bytes += Buffer.byteLength(v)
    else if (typeof v === 'number') tokenIds++ // completions accept token ids
    else if (Array.isArray(v)) v.forEach(add)
    else if (v != null && typeof v === 'object') {
      // chat content parts: { type: 'text', text }
      const text = (v as { text?: unknown }).text
      if (typeof text === 'string') bytes += Buffer.byteLength(text)
    }
  }
  if (request.kind === 'chat') {
    const messages = request.body.messages
    if (Array.isArray(messages)) {
      for (const m of messages) {
        if (m != null && typeof m === 'object') add((m as { content?: unknown }).content)
      }
    }
  } else {
    add(request.body.prompt)
  }
  return Math.max(1, Math.ceil(bytes / 4) + tokenIds)
}

function contentChunk (kind: InferenceRequest['kind'], text: string, first: boolean): InferenceChunk {
  if (kind === 'chat') {
    return { choices: [{ index: 0, delta: first ? { role: 'assistant', content: text } : { content: text }, finish_reason: null }] }
  }
  return { choices: [{ index: 0, text, finish_reason: null }] }
}

function finalChunk (kind: InferenceRequest['kind'], finishReason: FinishReason, first: boolean): InferenceChunk {
  if (kind === 'chat') {
    return { choices: [{ index: 0, delta: first ? { role: 'assistant', content: '' } : { content: '' }, finish_reason: finishReason }] }
  }
  return { choices: [{ index: 0, text: '', finish_reason: finishReason }] }
}

function requestSeed (request: InferenceRequest): Buffer {
  const input = request.kind === 'chat' ? request.body.messages : request.body.prompt
  return createHash('sha256')
    .update(JSON.stringify([request.kind, request.model, input ?? null, request.body.seed ?? null]))
    .digest()
}

/** An endless run of words from a seeded xorshift generator, handed out in exact-length slices. */
class WordStream {
  private state: number
  private pending = ''

  constructor (seed: Buffer) {
    this.state = seed.readUInt32LE(0) | 1 // xorshift never leaves 0
  }

  next (bytes: number): string {
    while (this.pending.length < bytes) {
      this.pending += WORDS[this.random() % WORDS.length] + ' '
    }
    const out = this.pending.slice(0, bytes)
    this.pending = this.pending.slice(bytes)
    return out
  }

  private random (): number {
    let x = this.state
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    this.state = x
    return x >>> 0
  }
}

function cancelled (): InferenceError {
  return new InferenceError('cancelled', 'job cancelled')
}

/**
 * Waits `ms` (or just yields to the event loop when ms <= 0), ending at once
 * with 'cancelled' when `signal` aborts or 'unavailable' when the backend stops.
 */
async function pause (ms: number, signal: AbortSignal, stopping: AbortSignal): Promise<void> {
  if (signal.aborted) throw cancelled()
  if (stopping.aborted) throw stopped()
  await new Promise<void>((resolve, reject) => {
    const done = (err?: InferenceError): void => {
      clearTimeout(timer)
      clearImmediate(immediate)
      signal.removeEventListener('abort', onAbort)
      stopping.removeEventListener('abort', onStop)
      if (err != null) reject(err)
      else resolve()
    }
    const onAbort = (): void => { done(cancelled()) }
    const onStop = (): void => { done(stopped()) }
    const timer = ms > 0 ? setTimeout(done, ms) : undefined
    const immediate = ms > 0 ? undefined : setImmediate(done)
    signal.addEventListener('abort', onAbort)
    stopping.addEventListener('abort', onStop)
  })
}

/** The backend-wide stop signal: every running job listens on it, so it has no listener cap. */
function stopController (): AbortController {
  const controller = new AbortController()
  setMaxListeners(Infinity, controller.signal)
  return controller
}

function stopped (): InferenceError {
  return new InferenceError('unavailable', 'synthetic backend stopped')
}

function dropUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

function checkTuning (t: SyntheticTuning): SyntheticTuning {
  const whole = (name: keyof SyntheticTuning, v: number, min: number): void => {
    if (!(Number.isInteger(v) || v === Infinity) || v < min) throw new RangeError(`synthetic backend: ${name} must be an integer >= ${min}, got ${v}`)
  }
  whole('chunks', t.chunks, 0)
  whole('chunkBytes', t.chunkBytes, 1)
  whole('maxConcurrent', t.maxConcurrent, 1)
  if (t.failAfterChunks !== undefined) whole('failAfterChunks', t.failAfterChunks, 0)
  if (!(t.intervalMs >= 0) || !(t.firstChunkDelayMs >= 0)) throw new RangeError('synthetic backend: intervalMs and firstChunkDelayMs must be >= 0')
  return t
}

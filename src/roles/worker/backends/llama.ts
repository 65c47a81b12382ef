/**
 * The embedded llama.cpp backend: GGUF models served in-process through
 * node-llama-cpp. Each model gets one context with `maxConcurrent`
 * sequences; a job holds one sequence from its first token to its last and
 * the sequence is cleared before the next job, so no KV cache (and no timing
 * signal about another requester's prompt) crosses between jobs. A model
 * configured without a path is the synthetic random-weight test model.
 *
 * Status counters: every job that gets a sequence ends as exactly one of
 * completed, failed or cancelled. Requests turned away before that (unknown
 * model, bad request, overloaded, not started) are the caller's to count.
 */
import { availableParallelism } from 'node:os'
import { basename } from 'node:path'
import {
  type BackendEvent,
  type BackendModel,
  type BackendStatus,
  type ChatChoiceDelta,
  type CompletionChoiceDelta,
  type FinishReason,
  type InferenceBackend,
  InferenceError,
  type InferenceRequest,
  type Usage
} from '../../../inference/types.js'
import { getLlama, loadModel } from './llama-load.js'
import { prepareChat, prepareCompletion } from './llama-jobs.js'
import type { LoadedModel, Slot, Waiter } from './llama-jobs.js'
import { cancelled, parseSampling, PieceStream, StopScanner } from './llama-request.js'
import type { RunResult } from './llama-request.js'
import type { Llama } from 'node-llama-cpp'

export interface LlamaBackendInit {
  /** No path: the synthetic model from ensureSyntheticModel(dataDir). */
  models: Array<{ name: string, path?: string, contextLength: number }>
  dataDir: string
  /** Parallel jobs per model (context sequences). */
  maxConcurrent: number
  /** Default: one per core but one, at least 1 (on small machines fewer threads are much faster). */
  threads?: number
  /** Default false. True tries CUDA/Vulkan/Metal and falls back to the CPU. */
  gpu?: boolean
  /** Diagnostics (llama.cpp warnings, GPU fallback). */
  log?: (line: string) => void
}

type Outcome = 'completed' | 'failed' | 'cancelled'

const STOP_GRACE_MS = 5_000

export class LlamaBackend extends EventTarget implements InferenceBackend {
  readonly kind = 'llama' as const

  private readonly init: LlamaBackendInit
  private readonly threads: number
  private readonly log: (line: string) => void
  private llama: Llama | null = null
  private readonly loaded = new Map<string, LoadedModel>()
  /** What each model turned out to be once loaded; kept after stop() for logs and /v1/models. */
  private readonly known = new Map<string, BackendModel>()
  private state: 'idle' | 'starting' | 'running' | 'stopped' | 'failed' = 'idle'
  private detail = 'not started'
  private readonly jobs = new Set<AbortController>()
  private readonly settling = new Set<Promise<void>>()
  private readonly counters = { running: 0, completed: 0, failed: 0, cancelled: 0, tokens: 0 }

  constructor (init: LlamaBackendInit) {
    super()
    if (!Number.isInteger(init.maxConcurrent) || init.maxConcurrent < 1) throw new RangeError(`maxConcurrent must be a whole number ≥ 1 (got ${init.maxConcurrent})`)
    if (init.models.length === 0) throw new RangeError('the llama backend needs at least one model')
    const names = new Set<string>()
    for (const m of init.models) {
      if (names.has(m.name)) throw new RangeError(`model ${m.name} is configured twice`)
      names.add(m.name)
      if (!Number.isInteger(m.contextLength) || m.contextLength < 16) throw new RangeError(`model ${m.name}: contextLength must be a whole number ≥ 16`)
    }
    this.init = init
    this.threads = Math.max(1, Math.floor(init.threads ?? availableParallelism() - 1))
    this.log = init.log ?? (() => {})
  }

  async start (onProgress: (line: string) => void = () => {}): Promise<void> {
    if (this.state !== 'idle') throw new Error(`the llama backend cannot start: it is ${this.state}`)
    this.setState('starting', 'loading models')
    try {
      const nlc = await import('node-llama-cpp')
      this.llama = await getLlama(nlc, this.init.gpu === true, this.log)
      onProgress(`llama.cpp ready (${this.llama.gpu === false ? 'CPU' : this.llama.gpu}, ${this.threads} thread${this.threads === 1 ? '' : 's'})`)
      for (const m of this.init.models) {
        if (!this.stateIs('starting')) throw new Error('stopped while loading models')
        const entry = await loadModel(nlc, this.llama, m, { dataDir: this.init.dataDir, maxConcurrent: this.init.maxConcurrent, threads: this.threads, log: this.log }, onProgress)
        this.loaded.set(m.name, entry)
        this.known.set(m.name, entry.info)
      }
      if (!this.stateIs('starting')) throw new Error('stopped while loading models')
      this.setState('running', '')
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      await this.disposeAll()
      if (this.stateIs('starting')) this.setState('failed', `failed to start: ${message}`)
      throw new InferenceError('unavailable', `llama backend: ${message}`, { cause: err })
    }
  }

  async stop (): Promise<void> {
    if (this.state === 'stopped') return
    this.setState('stopped', 'stopped')
    for (const entry of this.loaded.values()) {
      for (const w of entry.waiters.splice(0)) w.reject(new InferenceError('unavailable', 'the llama backend stopped'))
    }
    for (const job of this.jobs) job.abort()
    // Generation stops at the next token; wait for it so nothing runs on a disposed context.
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      Promise.allSettled([...this.settling]),
      new Promise(resolve => { timer = setTimeout(resolve, STOP_GRACE_MS) })
    ])
    clearTimeout(timer)
    await this.disposeAll()
  }

  private async disposeAll (): Promise<void> {
    const llama = this.llama
    this.llama = null
    this.loaded.clear()
    // Disposing the Llama instance disposes its models, contexts and sequences.
    if (llama !== null && !llama.disposed) {
      try { await llama.dispose() } catch (err) { this.log(`llama.cpp dispose failed: ${String(err)}`) }
    }
  }

  models (): BackendModel[] {
    return this.init.models.map(m => this.known.get(m.name) ?? {
      name: m.name,
      contextLength: m.contextLength,
      ...(m.path === undefined ? {} : { weightsPath: m.path }),
      synthetic: m.path === undefined,
      description: m.path === undefined ? 'synthetic test model with random weights: output is noise (not loaded)' : `${basename(m.path)} (not loaded)`
    }).map(info => ({ ...info }))
  }

  status (): BackendStatus {
    return { available: this.state === 'running', detail: this.detail, ...this.counters }
  }

  /** Reads the state afresh: it changes across awaits, which TypeScript's narrowing does not see. */
  private stateIs (state: LlamaBackend['state']): boolean {
    return this.state === state
  }

  private setState (state: LlamaBackend['state'], detail: string): void {
    const wasAvailable = this.state === 'running'
    this.state = state
    this.detail = detail
    if (wasAvailable !== (state === 'running')) this.dispatchEvent(new Event('availability'))
  }

  async * generate (request: InferenceRequest): AsyncGenerator<BackendEvent, void, undefined> {
    if (this.state !== 'running') throw new InferenceError('unavailable', `the llama backend is not serving (${this.detail})`, { retryAfterMs: 1000 })
    const entry = this.loaded.get(request.model)
    if (entry === undefined) throw new InferenceError('model_unknown', `model ${JSON.stringify(request.model)} is not served here; models: ${[...this.loaded.keys()].join(', ')}`)
    if (request.signal.aborted) throw cancelled()
    if (!Number.isInteger(request.maxTokens) || request.maxTokens < 1) {
      throw new InferenceError('bad_request', `max_tokens must be a whole number ≥ 1 (got ${request.maxTokens})`, { param: 'max_tokens' })
    }
    const sampling = parseSampling(request.body)
    const prepared = request.kind === 'chat' ? prepareChat(entry, request.body) : prepareCompletion(entry, request.body)
    const limit = entry.info.contextLength
    // node-llama-cpp needs at least one free cell after the prompt; the
    // generation then fits without a context shift (which would silently drop
    // the start of the conversation).
    if (prepared.promptTokens > limit - 2) {
      throw new InferenceError('bad_request', `the prompt is ${prepared.promptTokens} tokens; model ${entry.info.name} takes at most ${limit - 2}`, { param: prepared.param })
    }
    const maxTokens = Math.min(request.maxTokens, limit - prepared.promptTokens)

    const slot = await this.acquire(entry, request.signal)
    const controller = new AbortController()
    const onAbort = (): void => { controller.abort() }
    request.signal.addEventListener('abort', onAbort, { once: true })
    if (request.signal.aborted) controller.abort() // aborted while the slot was being handed over
    this.jobs.add(controller)
    this.counters.running++
    let outcome: Outcome = 'cancelled' // what it is if the consumer walks away early

    const stream = new PieceStream()
    const meterBefore = slot.sequence.tokenMeter.getState()
    // Stop sequences are matched here, on the text as streamed: node-llama-cpp's
    // own matcher misses those that start with a SentencePiece space in completions.
    const stops = new StopScanner(sampling.stop)
    let stopped = false
    let reasoningTokens = 0
    const onPiece = (text: string, reasoning: boolean, tokens: number): void => {
      if (stopped) return
      if (reasoning) reasoningTokens += tokens
      if (text === '') return
      if (reasoning) {
        const held = stops.flush()
        if (held !== '') stream.push({ text: held, reasoning: false })
        stream.push({ text, reasoning })
        return
      }
      const { emit, matched } = stops.push(text)
      if (emit !== '') stream.push({ text: emit, reasoning: false })
      if (matched) {
        stopped = true
        controller.abort() // node-llama-cpp stops before the next token
      }
    }
    const work = (async () => {
      try {
        let result: RunResult
        try {
          result = await prepared.run(slot, { signal: controller.signal, maxTokens, sampling, onPiece })
        } catch (err) {
          if (!stopped) throw err
          result = { stopReason: 'customStopTrigger' }
        }
        if (stopped) result = { stopReason: 'customStopTrigger' }
        else {
          const held = stops.flush()
          if (held !== '') stream.push({ text: held, reasoning: false })
        }
        const generated = slot.sequence.tokenMeter.usedOutputTokens - meterBefore.usedOutputTokens
        stream.end({ ...result, completionTokens: generated, reasoningTokens })
      } catch (err) {
        stream.fail(err)
      } finally {
        // Cancelled jobs' tokens count too, so measure after the native side stopped.
        this.counters.tokens += slot.sequence.tokenMeter.usedOutputTokens - meterBefore.usedOutputTokens
        await this.release(entry, slot)
      }
    })()
    this.settling.add(work)
    void work.finally(() => this.settling.delete(work))

    try {
      let first = true
      const role = (): { role?: 'assistant' } => {
        if (!first) return {}
        first = false
        return { role: 'assistant' }
      }
      while (true) {
        const item = await stream.next(request.signal)
        if ('text' in item) {
          const choice: ChatChoiceDelta | CompletionChoiceDelta = request.kind === 'chat'
            ? { index: 0, delta: { ...role(), ...(item.reasoning ? { reasoning_content: item.text } : { content: item.text }) }, finish_reason: null }
            : { index: 0, text: item.text, finish_reason: null }
          yield { type: 'chunk', chunk: { choices: [choice] } }
          continue
        }
        const finishReason: FinishReason = item.stopReason === 'maxTokens' ? 'length' : 'stop'
        const usage: Usage = {
          promptTokens: prepared.promptTokens,
          cachedTokens: 0,
          completionTokens: item.completionTokens,
          reasoningTokens: Math.min(item.reasoningTokens, item.completionTokens)
        }
        outcome = 'completed'
        const last: ChatChoiceDelta | CompletionChoiceDelta = request.kind === 'chat'
          ? { index: 0, delta: { ...role(), content: '' }, finish_reason: finishReason }
          : { index: 0, text: '', finish_reason: finishReason }
        yield { type: 'chunk', chunk: { choices: [last] } }
        yield { type: 'done', usage, finishReason }
        return
      }
    } catch (err) {
      if (request.signal.aborted) {
        outcome = 'cancelled'
        throw cancelled()
      }
      if (this.stateIs('stopped')) {
        outcome = 'cancelled'
        throw new InferenceError('unavailable', 'the llama backend stopped', { cause: err })
      }
      outcome = 'failed'
      throw err instanceof InferenceError ? err : new InferenceError('worker_failed', `llama.cpp: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
    } finally {
      controller.abort()
      request.signal.removeEventListener('abort', onAbort)
      this.jobs.delete(controller)
      this.counters.running--
      this.counters[outcome]++
    }
  }

  /** A free sequence now, or a place in a queue as long as maxConcurrent; overloaded beyond that. */
  private async acquire (entry: LoadedModel, signal: AbortSignal): Promise<Slot> {
    const free = entry.free.pop()
    if (free !== undefined) return free
    if (entry.waiters.length >= this.init.maxConcurrent) {
      throw new InferenceError('overloaded', `model ${entry.info.name}: ${this.init.maxConcurrent} jobs running and ${entry.waiters.length} waiting`, { retryAfterMs: 1000 })
    }
    return await new Promise<Slot>((resolve, reject) => {
      const waiter: Waiter = {
        resolve: slot => { signal.removeEventListener('abort', onAbort); resolve(slot) },
        reject: err => { signal.removeEventListener('abort', onAbort); reject(err) }
      }
      const onAbort = (): void => {
        const i = entry.waiters.indexOf(waiter)
        if (i >= 0) entry.waiters.splice(i, 1)
        waiter.reject(cancelled())
      }
      signal.addEventListener('abort', onAbort, { once: true })
      entry.waiters.push(waiter)
    })
  }

  private async release (entry: LoadedModel, slot: Slot): Promise<void> {
    try {
      await slot.sequence.clearHistory()
    } catch (err) {
      // Only fails once the context is disposed, and then nobody needs the slot.
      if (this.state === 'running') this.log(`clearing a sequence of ${entry.info.name} failed: ${String(err)}`)
      return
    }
    if (this.state !== 'running') return
    const next = entry.waiters.shift()
    if (next !== undefined) next.resolve(slot)
    else entry.free.push(slot)
  }
}

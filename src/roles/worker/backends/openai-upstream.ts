/**
 * A backend that forwards jobs to an OpenAI-compatible server the operator
 * runs next to the worker (vLLM, SGLang, llama.cpp server, Ollama). Every job
 * is streamed from the upstream (`stream: true` with usage), re-shaped into
 * InferenceChunks and closed with the upstream's own token counts.
 *
 * The upstream is probed with `GET /models` at start and then periodically;
 * while it is down `status().available` is false and an 'availability' event
 * marks each flip, so the worker can stop announcing capacity.
 *
 * URL: the base of the upstream's OpenAI API. A URL with no path gets `/v1`
 * appended (where all of the servers above serve the API); one with a path is
 * used as given, so a proxy prefix such as `/openai/v1` works. Trailing
 * slashes are dropped. Credentials belong in `apiKey`, not in the URL.
 */
import { createParser } from 'eventsource-parser'
import { InferenceError } from '../../../inference/types.js'
import { promptTokenEstimate } from './synthetic.js'
import { errorCode, isRecord, normaliseBaseUrl, parseEventData, readLimited, retryAfter, toChoice, toUsage, upstreamMessage } from './openai-wire.js'
import type {
  BackendEvent, BackendModel, BackendStatus, ChatChoiceDelta, CompletionChoiceDelta, FinishReason,
  InferenceBackend, InferenceChunk, InferenceErrorCode, InferenceRequest, Usage
} from '../../../inference/types.js'
import type { EventSourceMessage } from 'eventsource-parser'

export interface OpenAIUpstreamInit {
  /** Base URL of the upstream's OpenAI API, e.g. http://127.0.0.1:8000/v1 (a bare host gets /v1). */
  url: string
  /** Sent as `Authorization: Bearer <apiKey>`; never logged or put in errors. */
  apiKey?: string
  /** Announced name → upstream model id (default the same). */
  models: Array<{ name: string, contextLength: number, upstreamModel?: string }>
  /** Health probe period, ms. Default 5000. */
  healthIntervalMs?: number
  /** How long to wait for the upstream's response headers (connect included), ms. Default 30000. */
  requestTimeoutMs?: number
  log?: (line: string) => void
}

/** Connection failures that mean nothing is listening (or reachable) at the URL. */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])
/** Upstream error bodies are read up to this much: enough for a message, bounded for a misbehaving server. */
const ERROR_BODY_MAX = 64 * 1024
/** One SSE event larger than this is not a token delta: treat the stream as malformed. */
const SSE_BUFFER_MAX = 8 * 1024 * 1024

type AbortWhy = 'cancelled' | 'timeout' | 'stopped' | 'abandoned'

export class OpenAIUpstreamBackend implements InferenceBackend {
  readonly kind = 'openai' as const
  /** The normalised base URL (no trailing slash), as requests use it. */
  readonly baseUrl: string
  private readonly apiKey: string
  private readonly modelMap: Map<string, { contextLength: number, upstreamModel: string }>
  private readonly healthIntervalMs: number
  private readonly requestTimeoutMs: number
  private readonly logLine: (line: string) => void
  private readonly events = new EventTarget()
  private state: 'new' | 'started' | 'stopped' = 'new'
  private available = false
  private detail = 'not started'
  private probeTimer: NodeJS.Timeout | undefined
  private probeAbort: AbortController | undefined
  private probing: Promise<void> | undefined
  private readonly inflight = new Set<AbortController>()
  private warnedNoUsage = false
  private readonly warnedUnlisted = new Set<string>()
  private readonly counts = { running: 0, completed: 0, failed: 0, cancelled: 0, tokens: 0 }

  constructor (init: OpenAIUpstreamInit) {
    this.baseUrl = normaliseBaseUrl(init.url)
    this.apiKey = init.apiKey ?? ''
    this.modelMap = new Map(init.models.map(m => [m.name, { contextLength: m.contextLength, upstreamModel: m.upstreamModel ?? m.name }]))
    this.healthIntervalMs = init.healthIntervalMs ?? 5000
    this.requestTimeoutMs = init.requestTimeoutMs ?? 30_000
    const log = init.log ?? (() => {})
    this.logLine = line => { log(this.redact(line)) }
  }

  /** Probes the upstream once and keeps probing; never throws for a down upstream. */
  async start (onProgress?: (line: string) => void): Promise<void> {
    if (this.state === 'started') return
    this.state = 'started'
    onProgress?.(`probing upstream ${this.baseUrl}`)
    await this.probeOnce()
    onProgress?.(this.available ? `upstream ${this.baseUrl} is up` : this.redact(this.detail))
    this.scheduleProbe()
  }

  /** Stops probing and aborts running jobs (they fail with 'unavailable'). */
  async stop (): Promise<void> {
    this.state = 'stopped'
    clearTimeout(this.probeTimer)
    this.probeTimer = undefined
    this.probeAbort?.abort()
    for (const c of this.inflight) c.abort('stopped' satisfies AbortWhy)
    await this.probing
  }

  models (): BackendModel[] {
    const host = new URL(this.baseUrl).host
    return [...this.modelMap].map(([name, m]) => ({
      name,
      contextLength: m.contextLength,
      synthetic: false,
      description: `served by upstream ${host} as ${m.upstreamModel}`
    }))
  }

  status (): BackendStatus {
    return { available: this.available, detail: this.detail, ...this.counts }
  }

  addEventListener (type: 'availability', listener: () => void): void {
    this.events.addEventListener(type, listener)
  }

  removeEventListener (type: 'availability', listener: () => void): void {
    this.events.removeEventListener(type, listener)
  }

  async * generate (request: InferenceRequest): AsyncGenerator<BackendEvent> {
    const model = this.modelMap.get(request.model)
    if (model == null) throw new InferenceError('model_unknown', `model ${request.model} is not served here`)
    if (this.state === 'stopped') throw new InferenceError('unavailable', 'upstream backend stopped')
    if (request.signal.aborted) throw new InferenceError('cancelled', 'job cancelled')

    this.counts.running++
    let outcome: 'completed' | 'failed' | 'cancelled' | undefined
    // Streamed pieces with text: the token count when the upstream gives none (or the job ends early).
    let pieces = 0
    let reasoningPieces = 0
    let usage: Usage | undefined
    const controller = new AbortController()
    this.inflight.add(controller)
    const onAbort = (): void => { controller.abort('cancelled' satisfies AbortWhy) }
    request.signal.addEventListener('abort', onAbort)
    try {
      const body: Record<string, unknown> = {
        ...request.body,
        model: model.upstreamModel,
        max_tokens: request.maxTokens,
        stream: true,
        stream_options: { include_usage: true }
      }
      // request.maxTokens already reflects it, and servers prefer it over max_tokens
      delete body.max_completion_tokens
      const path = request.kind === 'chat' ? '/chat/completions' : '/completions'

      const headersTimer = setTimeout(() => { controller.abort('timeout' satisfies AbortWhy) }, this.requestTimeoutMs)
      let res: Response
      try {
        res = await fetch(this.baseUrl + path, {
          method: 'POST',
          headers: { ...this.authHeaders(), 'content-type': 'application/json', accept: 'text/event-stream' },
          body: JSON.stringify(body),
          signal: controller.signal
        })
      } catch (err) {
        throw this.transportFailure(err, controller.signal, request.signal, true)
      } finally {
        clearTimeout(headersTimer)
      }
      if (!res.ok) throw await this.httpFailure(res, model.upstreamModel)
      // An answer is proof enough that the upstream is back, sooner than the next probe.
      this.setAvailable(true, '')
      if (res.body == null) throw new InferenceError('worker_failed', 'upstream sent an empty response')

      const received: EventSourceMessage[] = []
      let malformed: string | undefined
      const parser = createParser({
        onEvent: e => { received.push(e) },
        onError: e => { malformed ??= e.message },
        maxBufferSize: SSE_BUFFER_MAX
      })
      const reader = res.body.getReader()
      const decoder = new TextDecoder()
      let sawDone = false
      let finishReason: FinishReason | undefined
      while (!sawDone) {
        let read: ReadableStreamReadResult<Uint8Array>
        try {
          read = await reader.read()
        } catch (err) {
          throw this.transportFailure(err, controller.signal, request.signal, false)
        }
        try {
          parser.feed(read.done ? decoder.decode() : decoder.decode(read.value, { stream: true }))
        } catch (err) {
          // the parser refuses input once its buffer limit was hit
          malformed ??= (err as Error).message
        }
        if (malformed != null) throw new InferenceError('worker_failed', `upstream sent a malformed event stream: ${this.redact(malformed)}`)
        while (received.length > 0 && !sawDone) {
          // events parsed before a cancel must not be handed out after it
          if (request.signal.aborted) throw new InferenceError('cancelled', 'job cancelled')
          const data = (received.shift() as EventSourceMessage).data
          if (data.trim() === '[DONE]') {
            sawDone = true
            break
          }
          const payload = parseEventData(data, this.redact.bind(this))
          usage = toUsage(payload.usage) ?? usage
          const choices: Array<ChatChoiceDelta | CompletionChoiceDelta> = []
          for (const raw of Array.isArray(payload.choices) ? payload.choices : []) {
            const choice = toChoice(request.kind, raw)
            if (choice == null) continue
            choices.push(choice)
            if (choice.finish_reason != null) finishReason = choice.finish_reason
            if ('text' in choice) {
              if (choice.text !== '') pieces++
            } else {
              if ((choice.delta.content ?? '') !== '' || (choice.delta.reasoning_content ?? '') !== '') pieces++
              if ((choice.delta.reasoning_content ?? '') !== '') reasoningPieces++
            }
          }
          if (choices.length > 0) {
            const chunk: InferenceChunk = { choices }
            yield { type: 'chunk', chunk }
          }
        }
        if (read.done) break
      }
      if (!sawDone && finishReason == null) {
        throw new InferenceError('worker_failed', 'upstream closed the stream before finishing (no finish_reason, no [DONE])')
      }
      // Let the connection go back to the pool rather than waiting on the body's end.
      await reader.cancel().catch(() => {})
      if (request.signal.aborted) throw new InferenceError('cancelled', 'job cancelled')

      if (usage == null) {
        if (!this.warnedNoUsage) {
          this.warnedNoUsage = true
          this.logLine(`upstream ${this.baseUrl} sent no usage (stream_options.include_usage unsupported?); estimating tokens: prompt bytes / 4, one completion token per streamed piece`)
        }
        usage = { promptTokens: promptTokenEstimate(request), cachedTokens: 0, completionTokens: pieces, reasoningTokens: reasoningPieces }
      }
      outcome = 'completed'
      yield { type: 'done', usage, finishReason: finishReason ?? 'stop' }
    } catch (err) {
      outcome = err instanceof InferenceError && err.code === 'cancelled' ? 'cancelled' : 'failed'
      throw err
    } finally {
      request.signal.removeEventListener('abort', onAbort)
      // Unfinished (failed, or left by its consumer): close the connection so the upstream stops generating.
      if (outcome !== 'completed') controller.abort('abandoned' satisfies AbortWhy)
      this.inflight.delete(controller)
      this.counts.running--
      this.counts.tokens += outcome === 'completed' && usage != null ? usage.completionTokens : pieces
      this.counts[outcome ?? 'cancelled']++
    }
  }

  /** Maps a fetch or body-read failure to the error the job ends with. */
  private transportFailure (err: unknown, signal: AbortSignal, requestSignal: AbortSignal, beforeHeaders: boolean): InferenceError {
    if (requestSignal.aborted) return new InferenceError('cancelled', 'job cancelled')
    if (signal.aborted) {
      const why = signal.reason as AbortWhy
      if (why === 'timeout') return new InferenceError('unavailable', `upstream ${this.baseUrl} sent no response within ${this.requestTimeoutMs} ms`)
      return new InferenceError('unavailable', 'upstream backend stopped')
    }
    const code = errorCode(err) ?? 'unknown error'
    if (beforeHeaders && UNREACHABLE.has(code)) {
      const detail = `upstream ${this.baseUrl} unreachable: ${code}`
      this.setAvailable(false, detail)
      return new InferenceError('unavailable', detail, { retryAfterMs: this.healthIntervalMs })
    }
    return new InferenceError('worker_failed', `upstream ${this.baseUrl} connection failed${beforeHeaders ? '' : ' mid-stream'}: ${code}`)
  }

  /** Maps an upstream HTTP error answer to an InferenceError carrying the upstream's message. */
  private async httpFailure (res: Response, upstreamModel: string): Promise<InferenceError> {
    const { message, param } = upstreamMessage(await readLimited(res, ERROR_BODY_MAX))
    const said = this.redact(message === '' ? res.statusText : message)
    const retryAfterMs = retryAfter(res.headers.get('retry-after'))
    const fail = (code: InferenceErrorCode, text: string): InferenceError => new InferenceError(code, text, { retryAfterMs, param })
    switch (res.status) {
      case 400:
      case 422:
        return fail('bad_request', said)
      case 401:
      case 403: {
        const detail = `upstream ${this.baseUrl} refused the API key (HTTP ${res.status})`
        this.setAvailable(false, detail)
        return fail('unavailable', detail)
      }
      case 404:
        return fail('model_unknown', `upstream does not serve ${upstreamModel} (HTTP 404: ${said})`)
      case 413:
        return fail('too_large', said)
      case 429:
        return fail('overloaded', `upstream is busy (HTTP 429: ${said})`)
      case 503:
        return fail('unavailable', `upstream is unavailable (HTTP 503: ${said})`)
      default:
        return fail('worker_failed', `upstream failed (HTTP ${res.status}: ${said})`)
    }
  }

  private async probeOnce (): Promise<void> {
    const controller = new AbortController()
    this.probeAbort = controller
    const timer = setTimeout(() => { controller.abort('timeout' satisfies AbortWhy) }, this.requestTimeoutMs)
    const run = async (): Promise<void> => {
      try {
        const res = await fetch(`${this.baseUrl}/models`, { headers: this.authHeaders(), signal: controller.signal })
        if (!res.ok) {
          await res.body?.cancel().catch(() => {})
          const why = res.status === 401 || res.status === 403 ? 'refused the API key' : 'failed the health probe GET /models'
          this.setAvailable(false, `upstream ${this.baseUrl} ${why} (HTTP ${res.status})`)
          return
        }
        this.warnUnlisted(await res.json().catch(() => undefined))
        this.setAvailable(true, '')
      } catch (err) {
        if (this.state === 'stopped') return
        const code = controller.signal.aborted ? `no answer within ${this.requestTimeoutMs} ms` : errorCode(err) ?? 'unknown error'
        this.setAvailable(false, `upstream ${this.baseUrl} unreachable: ${code}`)
      } finally {
        clearTimeout(timer)
        if (this.probeAbort === controller) this.probeAbort = undefined
      }
    }
    this.probing = run()
    await this.probing
  }

  /** The next probe starts a period after the last one ended, so slow probes never pile up. */
  private scheduleProbe (): void {
    if (this.state !== 'started') return
    clearTimeout(this.probeTimer) // a stop() then start() must not leave two probe chains
    this.probeTimer = setTimeout(() => {
      void this.probeOnce().then(() => { this.scheduleProbe() })
    }, this.healthIntervalMs)
    // the worker's own lifetime, not a probe timer, should keep the process up
    this.probeTimer.unref()
  }

  /** A configured model the upstream does not list is likely a typo: say so once, but keep serving (aliases exist). */
  private warnUnlisted (list: unknown): void {
    if (!isRecord(list) || !Array.isArray(list.data)) return
    const ids = new Set(list.data.map(m => (isRecord(m) ? m.id : undefined)).filter(id => typeof id === 'string'))
    for (const { upstreamModel } of this.modelMap.values()) {
      if (!ids.has(upstreamModel) && !this.warnedUnlisted.has(upstreamModel)) {
        this.warnedUnlisted.add(upstreamModel)
        this.logLine(`upstream ${this.baseUrl} does not list model ${upstreamModel} in GET /models (listed: ${[...ids].join(', ') || 'none'})`)
      }
    }
  }

  private setAvailable (available: boolean, detail: string): void {
    const flipped = available !== this.available
    const changed = flipped || detail !== this.detail
    this.available = available
    this.detail = this.redact(detail)
    if (changed) {
      const retrying = this.state === 'started' ? `; probing every ${this.healthIntervalMs} ms` : ''
      this.logLine(available ? `upstream ${this.baseUrl} is up` : `${this.detail}${retrying}`)
    }
    if (flipped) this.events.dispatchEvent(new Event('availability'))
  }

  private authHeaders (): Record<string, string> {
    return this.apiKey === '' ? {} : { authorization: `Bearer ${this.apiKey}` }
  }

  /** Upstreams sometimes echo the key they refused; it must not travel on in errors or logs. */
  private redact (text: string): string {
    return this.apiKey === '' ? text : text.split(this.apiKey).join('[redacted]')
  }
}

/**
 * The client's OpenAI-compatible HTTP API: `/v1/chat/completions`,
 * `/v1/completions` (plain and server-sent events), `/v1/models` and
 * `/healthz`, on `node:http`. It validates requests, hands each job to a
 * `CompletionService` (the network) and shapes what comes back as OpenAI
 * does, so the official SDKs work against it unchanged. A client that goes
 * away aborts its job at once, so the worker stops spending tokens.
 */
import { randomUUID } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { parseChatRequest, parseCompletionRequest, type ParsedRequest } from '../../inference/openai-request.js'
import { InferenceError, usageToOpenAI } from '../../inference/types.js'
import { hostHeaderName, isLoopbackName } from '../../ops/loopback-host.js'
import type { ChatChoiceDelta, CompletionChoiceDelta, FinishReason, InferenceChunk, InferenceKind, Usage } from '../../inference/types.js'

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

export interface ApiServerInit {
  host: string
  port: number
  service: CompletionService
  /** Largest request body accepted; larger ones get 413. Default 4 MiB. */
  maxBodyBytes?: number
  /**
   * Time allowed to receive a whole request (headers and body), against
   * clients that trickle bytes. Generation deadlines belong to the service.
   * Default 60 s; 0 disables it.
   */
  requestTimeoutMs?: number
  log?: (line: string) => void
}

export interface ApiServer {
  /** http://HOST:PORT, without a trailing slash. */
  url: string
  port: number
  /** Stops accepting, aborts running jobs and resolves once every connection is closed. */
  close(): Promise<void>
  /** Completion requests being answered now. */
  readonly inFlight: number
}

const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
const DEFAULT_REQUEST_TIMEOUT_MS = 60_000
const MAX_HEADERS_TIMEOUT_MS = 30_000
/** How long close() lets aborted jobs end their responses before dropping connections. */
const CLOSE_GRACE_MS = 2_000

/** An HTTP-level refusal that is not an inference error (unknown route, wrong method, foreign Host). */
class HttpProblem extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

interface ErrorBody { message: string, type: string, param: string | null, code: string }

function errorType (status: number): string {
  return status >= 500 ? 'server_error' : 'invalid_request_error'
}

function inferenceErrorBody (err: InferenceError): ErrorBody {
  return { message: err.message, type: errorType(err.httpStatus), param: err.param, code: err.code }
}

function newRequestId (): string {
  return randomUUID().replaceAll('-', '')
}

function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  const data = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) })
  res.end(data)
}

/** Resolves when the response can take more data, or is gone. */
async function writable (res: ServerResponse): Promise<void> {
  if (res.destroyed) return
  await new Promise<void>(resolve => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = (): InferenceError => new InferenceError('too_large', `the request body exceeds the limit of ${maxBytes} bytes`)
  const declared = Number(req.headers['content-length'])
  // Refused before reading: Node then discards the rest of the body, so the connection stays usable.
  if (declared > maxBytes) return Promise.reject(tooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    req.on('data', (chunk: Buffer) => {
      if (over) return // keep reading and dropping, so the client can finish sending and read the 413
      size += chunk.length
      if (size > maxBytes) {
        over = true
        chunks.length = 0
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => { if (!over) resolve(Buffer.concat(chunks, size)) })
    req.on('error', () => { reject(new InferenceError('cancelled', 'the client went away while sending the request')) })
    req.on('close', () => { if (!req.complete) reject(new InferenceError('cancelled', 'the client went away while sending the request')) })
  })
}

function parseJsonBody (body: Buffer): unknown {
  if (body.length === 0) throw new InferenceError('bad_request', 'the request body is empty; expected a JSON object')
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  } catch {
    throw new InferenceError('bad_request', 'the request body is not valid UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new InferenceError('bad_request', `the request body is not valid JSON: ${(err as Error).message}`)
  }
}

function requireJsonContentType (req: IncomingMessage): void {
  // Strict on purpose: a web page can POST text/plain or form bodies to 127.0.0.1 without a
  // CORS preflight, but not application/json, so this keeps other sites from spending the wallet.
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (type !== 'application/json') {
    throw new InferenceError('bad_request', `Content-Type must be application/json (got ${type === '' ? 'none' : JSON.stringify(type)})`)
  }
}

/** A paid job's usage also says what it cost (`cost_nanoton`). */
function withCost (usage: Record<string, unknown>, cost: ApiCost | undefined): Record<string, unknown> {
  return cost === undefined ? usage : { ...usage, cost_nanoton: cost }
}

function toOpenAIModel (m: ApiModel): Record<string, unknown> {
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

export async function startApiServer (init: ApiServerInit): Promise<ApiServer> {
  const maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const requestTimeout = init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  const log = init.log ?? (() => {})
  const service = init.service
  // Bound to loopback: refuse Host names that are not, against DNS rebinding from web pages.
  const checkHost = isLoopbackName(init.host)
  const running = new Set<AbortController>()
  let closing = false
  let closed: Promise<void> | undefined

  const server = createServer({
    noDelay: true, // each SSE event goes out as soon as it is written
    requestTimeout,
    headersTimeout: requestTimeout === 0 ? MAX_HEADERS_TIMEOUT_MS : Math.min(requestTimeout, MAX_HEADERS_TIMEOUT_MS),
    // Node checks these timeouts only this often (30 s by default): keep the check finer than the timeout.
    connectionsCheckingInterval: Math.max(250, Math.min(30_000, (requestTimeout === 0 ? MAX_HEADERS_TIMEOUT_MS : requestTimeout) / 4))
  })

  /** An abort controller for one request, aborted when the client goes before the response is complete. */
  function abortOnDisconnect (res: ServerResponse): AbortController {
    const controller = new AbortController()
    const onClose = (): void => {
      // 'close' also follows a normal finish; only an unfinished response means the client left.
      if (!res.writableFinished) controller.abort(new InferenceError('cancelled', 'the client disconnected'))
    }
    res.once('close', onClose)
    if (res.destroyed) onClose()
    return controller
  }

  function replyError (res: ServerResponse, err: unknown, requestId: string): void {
    if (err instanceof InferenceError) {
      const headers: Record<string, string> = {}
      if (err.retryAfterMs > 0) headers['retry-after'] = String(Math.ceil(err.retryAfterMs / 1000))
      if (err.httpStatus >= 500) log(`api ${requestId}: ${err.code}: ${err.message}`)
      sendJson(res, err.httpStatus, { error: inferenceErrorBody(err) }, headers)
    } else if (err instanceof HttpProblem) {
      sendJson(res, err.status, { error: { message: err.message, type: errorType(err.status), param: null, code: err.code } }, err.headers)
    } else {
      // Details go to the log only: they may name files, peers or keys.
      log(`api ${requestId}: internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`)
      sendJson(res, 500, { error: { message: 'internal server error', type: 'server_error', param: null, code: 'internal_error' } })
    }
    if (res.headersSent && !res.writableEnded && !res.destroyed) res.destroy()
  }

  function methodIs (req: IncomingMessage, allowed: 'GET' | 'POST'): void {
    const method = req.method ?? ''
    if (method === allowed || (allowed === 'GET' && method === 'HEAD')) return
    throw new HttpProblem(405, 'method_not_allowed', `${method} is not allowed here; use ${allowed}`, { allow: allowed })
  }

  async function route (req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (checkHost && req.headers.host !== undefined && !isLoopbackName(hostHeaderName(req.headers.host))) {
      throw new HttpProblem(403, 'forbidden', 'this API only answers requests addressed to a loopback host')
    }
    const path = (req.url ?? '/').split('?')[0]
    switch (path) {
      case '/v1/chat/completions':
        methodIs(req, 'POST')
        return await complete('chat', req, res, requestId)
      case '/v1/completions':
        methodIs(req, 'POST')
        return await complete('completion', req, res, requestId)
      case '/v1/models': {
        methodIs(req, 'GET')
        const models = await service.models(abortOnDisconnect(res).signal)
        return sendJson(res, 200, { object: 'list', data: models.map(toOpenAIModel) })
      }
      case '/healthz':
        methodIs(req, 'GET')
        return sendJson(res, 200, { status: closing ? 'closing' : 'ok', in_flight: running.size })
    }
    if (path.startsWith('/v1/models/')) {
      methodIs(req, 'GET')
      let id: string
      try {
        // The SDK encodes the id, so names with '/' arrive as %2F.
        id = decodeURIComponent(path.slice('/v1/models/'.length))
      } catch {
        throw new InferenceError('bad_request', 'the model id in the path is not valid percent-encoding', { param: 'model' })
      }
      const model = (await service.models(abortOnDisconnect(res).signal)).find(m => m.id === id)
      if (model === undefined) throw new InferenceError('model_unknown', `model '${id}' is not offered by any known worker`, { param: 'model' })
      return sendJson(res, 200, toOpenAIModel(model))
    }
    throw new HttpProblem(404, 'not_found', `no route for ${req.method ?? ''} ${path}`)
  }

  async function complete (kind: InferenceKind, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    requireJsonContentType(req)
    const json = parseJsonBody(await readBody(req, maxBodyBytes))
    const parsed = kind === 'chat' ? parseChatRequest(json) : parseCompletionRequest(json)
    if (closing) throw new InferenceError('unavailable', 'the API server is shutting down')
    const controller = abortOnDisconnect(res)
    running.add(controller)
    try {
      await answer({ requestId, kind, model: parsed.model, body: parsed.body, maxTokens: parsed.maxTokens }, parsed, res, controller.signal)
    } finally {
      running.delete(controller)
    }
  }

  /** The error to report: once we aborted the job, whatever the service throws follows from our reason. */
  function failure (err: unknown, signal: AbortSignal): unknown {
    return signal.aborted && signal.reason instanceof InferenceError ? signal.reason : err
  }

  async function answer (job: ApiJob, parsed: ParsedRequest, res: ServerResponse, signal: AbortSignal): Promise<void> {
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
      if (parsed.stream) await streamEvents(job, parsed, res, signal, iterator, first)
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

  async function streamEvents (job: ApiJob, parsed: ParsedRequest, res: ServerResponse, signal: AbortSignal, iterator: AsyncIterator<ApiEvent>, first: IteratorResult<ApiEvent>): Promise<void> {
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

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const requestId = newRequestId()
    const started = performance.now()
    res.setHeader('x-request-id', requestId)
    res.on('close', () => {
      const outcome = res.writableFinished ? String(res.statusCode) : `${res.statusCode} (client gone)`
      log(`api ${requestId}: ${req.method ?? ''} ${(req.url ?? '').split('?')[0]} ${outcome} ${Math.round(performance.now() - started)} ms`)
    })
    route(req, res, requestId).catch(err => { replyError(res, err, requestId) })
  })
  server.on('error', err => { log(`api server error: ${err.message}`) })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: init.host, port: init.port }, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the API server has no TCP address')
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address

  async function close (): Promise<void> {
    closing = true
    for (const controller of running) controller.abort(new InferenceError('unavailable', 'the API server is shutting down'))
    const done = new Promise<void>(resolve => { server.close(() => { resolve() }) })
    server.closeIdleConnections()
    // Aborted jobs end their responses quickly; then whatever lingers is cut.
    const deadline = Date.now() + CLOSE_GRACE_MS
    while (running.size > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    server.closeAllConnections()
    await done
  }

  return {
    url: `http://${urlHost}:${address.port}`,
    port: address.port,
    close: async () => {
      closed ??= close()
      await closed
    },
    get inFlight () { return running.size }
  }
}

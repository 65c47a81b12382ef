/**
 * The client's OpenAI-compatible HTTP API: `/v1/chat/completions`,
 * `/v1/completions` (plain and server-sent events), `/v1/models` and
 * `/healthz`, on `node:http`. It validates requests, hands each job to a
 * `CompletionService` (the network) and shapes what comes back as OpenAI
 * does, so the official SDKs work against it unchanged. A client that goes
 * away aborts its job at once, so the worker stops spending tokens.
 *
 * This file is the server (limits, the Host check, dispatch, errors,
 * shutdown); the routes are in http-routes.ts, the answers' shapes in
 * http-answers.ts, request and response plumbing in http-io.ts.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { InferenceError } from '../../inference/types.js'
import { hostHeaderName, isLoopbackName } from '../../ops/loopback-host.js'
import { errorType, HttpProblem, inferenceErrorBody, newRequestId, sendJson } from './http-io.js'
import { findRoute, requireMethod } from './http-routes.js'
import type { CompletionService } from './api-types.js'
import type { ApiContext } from './http-routes.js'

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

export async function startApiServer (init: ApiServerInit): Promise<ApiServer> {
  const maxBodyBytes = init.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  const requestTimeout = init.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  const log = init.log ?? (() => {})
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

  const ctx: ApiContext = { service: init.service, maxBodyBytes, log, running, closing: () => closing, abortOnDisconnect }

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

  async function route (req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (checkHost && req.headers.host !== undefined && !isLoopbackName(hostHeaderName(req.headers.host))) {
      throw new HttpProblem(403, 'forbidden', 'this API only answers requests addressed to a loopback host')
    }
    const path = (req.url ?? '/').split('?')[0]
    const found = findRoute(path)
    if (found == null) throw new HttpProblem(404, 'not_found', `no route for ${req.method ?? ''} ${path}`)
    requireMethod(req, found.route.method)
    await found.route.handler(ctx, req, res, requestId, found.rest)
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

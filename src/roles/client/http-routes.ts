/**
 * The routes of the client's OpenAI-compatible API, one handler each:
 * `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
 * `GET /v1/models/{id}` and `GET /healthz`.
 */
import { parseChatRequest, parseCompletionRequest } from '../../inference/openai-request.js'
import { InferenceError } from '../../inference/types.js'
import { answer, toOpenAIModel } from './http-answers.js'
import { HttpProblem, parseJsonBody, readBody, requireJsonContentType, sendJson } from './http-io.js'
import type { CompletionService } from './api-types.js'
import type { InferenceKind } from '../../inference/types.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** What a handler may use of the server. */
export interface ApiContext {
  service: CompletionService
  maxBodyBytes: number
  log: (line: string) => void
  /** Completion requests being answered (aborted when the server closes). */
  running: Set<AbortController>
  closing: () => boolean
  /** An abort controller for one request, aborted when the client goes before the response is complete. */
  abortOnDisconnect: (res: ServerResponse) => AbortController
}

export interface Route {
  method: 'GET' | 'POST'
  /** An exact path, or a prefix ending in '/' whose remainder the handler gets. */
  path: string
  handler: (ctx: ApiContext, req: IncomingMessage, res: ServerResponse, requestId: string, rest: string) => Promise<void>
}

export const ROUTES: Route[] = [
  { method: 'POST', path: '/v1/chat/completions', handler: async (ctx, req, res, requestId) => { await complete(ctx, 'chat', req, res, requestId) } },
  { method: 'POST', path: '/v1/completions', handler: async (ctx, req, res, requestId) => { await complete(ctx, 'completion', req, res, requestId) } },
  { method: 'GET', path: '/v1/models', handler: listModels },
  { method: 'GET', path: '/v1/models/', handler: getModel },
  { method: 'GET', path: '/healthz', handler: async (ctx, _req, res) => { sendJson(res, 200, { status: ctx.closing() ? 'closing' : 'ok', in_flight: ctx.running.size }) } }
]

/** The route for a path, and the rest of the path after a prefix route; undefined when none matches. */
export function findRoute (path: string): { route: Route, rest: string } | undefined {
  const exact = ROUTES.find(r => r.path === path)
  if (exact != null) return { route: exact, rest: '' }
  const prefix = ROUTES.find(r => r.path.endsWith('/') && path.startsWith(r.path))
  return prefix == null ? undefined : { route: prefix, rest: path.slice(prefix.path.length) }
}

/** Throws 405 unless the request uses the route's method (HEAD counts as GET). */
export function requireMethod (req: IncomingMessage, allowed: Route['method']): void {
  const method = req.method ?? ''
  if (method === allowed || (allowed === 'GET' && method === 'HEAD')) return
  throw new HttpProblem(405, 'method_not_allowed', `${method} is not allowed here; use ${allowed}`, { allow: allowed })
}

async function complete (ctx: ApiContext, kind: InferenceKind, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  requireJsonContentType(req)
  const json = parseJsonBody(await readBody(req, ctx.maxBodyBytes))
  const parsed = kind === 'chat' ? parseChatRequest(json) : parseCompletionRequest(json)
  if (ctx.closing()) throw new InferenceError('unavailable', 'the API server is shutting down')
  const controller = ctx.abortOnDisconnect(res)
  ctx.running.add(controller)
  try {
    await answer(ctx.service, { requestId, kind, model: parsed.model, body: parsed.body, maxTokens: parsed.maxTokens }, parsed, res, controller.signal, ctx.log)
  } finally {
    ctx.running.delete(controller)
  }
}

async function listModels (ctx: ApiContext, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const models = await ctx.service.models(ctx.abortOnDisconnect(res).signal)
  sendJson(res, 200, { object: 'list', data: models.map(toOpenAIModel) })
}

async function getModel (ctx: ApiContext, _req: IncomingMessage, res: ServerResponse, _requestId: string, rest: string): Promise<void> {
  let id: string
  try {
    // The SDK encodes the id, so names with '/' arrive as %2F.
    id = decodeURIComponent(rest)
  } catch {
    throw new InferenceError('bad_request', 'the model id in the path is not valid percent-encoding', { param: 'model' })
  }
  const model = (await ctx.service.models(ctx.abortOnDisconnect(res).signal)).find(m => m.id === id)
  if (model === undefined) throw new InferenceError('model_unknown', `model '${id}' is not offered by any known worker`, { param: 'model' })
  sendJson(res, 200, toOpenAIModel(model))
}

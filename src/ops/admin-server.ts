/**
 * The admin endpoint, on loopback only: /healthz, /status (JSON) and
 * /metrics (Prometheus text: libp2p's metrics and ours), and the node's
 * operator actions (POST /wallet/..., /channels/...). Actions need the token
 * from `<dataDir>/admin.token` (mode 0600) in `x-cocoon-admin-token`: a web
 * page cannot send that header cross-origin, and another local user cannot
 * read the file. Host names other than loopback are refused (DNS rebinding).
 */
import { timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { hostHeaderName, isLoopbackName } from './loopback-host.js'

export const ADMIN_TOKEN_HEADER = 'x-cocoon-admin-token'
const MAX_ACTION_BODY_BYTES = 16 * 1024

/** An action refused for a reason the operator can fix: answered with this status and message. */
export class AdminActionError extends Error {
  readonly status: number
  constructor (status: number, message: string) {
    super(message)
    this.status = status
  }
}

export interface AdminHandlers {
  /** True while the node is started and not stopping. */
  healthy(): boolean
  status(): Promise<unknown>
  metrics(): Promise<{ contentType: string, body: string }>
  /** GET routes beyond the built-in ones (e.g. /wallet, /channels); undefined: not found. */
  read?(path: string): Promise<unknown>
  /** POST actions; undefined: not found. Throw AdminActionError for a refusal. */
  act?(path: string, body: Record<string, unknown>): Promise<unknown>
  /** The token POST actions must carry. */
  token?: string
}

export interface AdminServer {
  url: string
  close(): Promise<void>
}

export async function startAdminServer (host: string, port: number, handlers: AdminHandlers): Promise<AdminServer> {
  const server = createServer((req, res) => {
    const send = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' })
      res.end(body)
    }
    const path = (req.url ?? '/').split('?')[0]
    const fail = (status: number, code: string, message: string): void => { send(status, 'application/json', JSON.stringify({ error: { code, message } })) }
    if (req.headers.host !== undefined && !isLoopbackName(hostHeaderName(req.headers.host))) {
      fail(403, 'forbidden', 'the admin endpoint answers loopback host names only')
      return
    }
    if (req.method === 'POST') {
      void runAction(req, handlers, path).then(
        result => { send(200, 'application/json', JSON.stringify(result ?? { ok: true }, bigintReplacer, 2)) },
        (err: unknown) => {
          if (err instanceof AdminActionError) fail(err.status, err.status === 404 ? 'not_found' : err.status === 401 ? 'unauthorized' : 'refused', err.message)
          else fail(500, 'internal', (err as Error).message)
        }
      )
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      fail(405, 'method_not_allowed', 'use GET, or POST for actions')
      return
    }
    const route = async (): Promise<void> => {
      switch (path) {
        case '/healthz': {
          const ok = handlers.healthy()
          send(ok ? 200 : 503, 'application/json', JSON.stringify({ ok }))
          return
        }
        case '/status':
          send(200, 'application/json', JSON.stringify(await handlers.status(), bigintReplacer, 2))
          return
        case '/metrics': {
          const { contentType, body } = await handlers.metrics()
          send(200, contentType, body)
          return
        }
        default: {
          const extra = await handlers.read?.(path)
          if (extra !== undefined) {
            send(200, 'application/json', JSON.stringify(extra, bigintReplacer, 2))
            return
          }
          send(404, 'application/json', JSON.stringify({ error: { code: 'not_found', message: 'try /healthz, /status or /metrics' } }))
        }
      }
    }
    route().catch(err => {
      send(500, 'application/json', JSON.stringify({ error: { code: 'internal', message: (err as Error).message } }))
    })
  })
  server.keepAliveTimeout = 1_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  const address = server.address() as AddressInfo
  const hostPart = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    url: `http://${hostPart}:${address.port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>(resolve => server.close(() => { resolve() }))
    }
  }
}

async function runAction (req: import('node:http').IncomingMessage, handlers: AdminHandlers, path: string): Promise<unknown> {
  const given = req.headers[ADMIN_TOKEN_HEADER]
  if (handlers.token == null || typeof given !== 'string' || !sameToken(given, handlers.token)) {
    req.resume()
    throw new AdminActionError(401, `actions need the token from the node's admin.token file in ${ADMIN_TOKEN_HEADER}`)
  }
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_ACTION_BODY_BYTES) throw new AdminActionError(413, `an action body is at most ${MAX_ACTION_BODY_BYTES} bytes`)
    chunks.push(chunk as Buffer)
  }
  let body: unknown = {}
  if (size > 0) {
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw new AdminActionError(400, 'the action body is not JSON')
    }
  }
  if (body == null || typeof body !== 'object' || Array.isArray(body)) throw new AdminActionError(400, 'the action body must be a JSON object')
  const result = await handlers.act?.(path, body as Record<string, unknown>)
  if (result === undefined) throw new AdminActionError(404, `no action ${path}`)
  return result
}

function sameToken (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

function bigintReplacer (_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

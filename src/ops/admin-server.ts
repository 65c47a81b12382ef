/**
 * The admin endpoint, on loopback only: /healthz, /status (JSON) and
 * /metrics (Prometheus text: libp2p's metrics and ours).
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface AdminHandlers {
  /** True while the node is started and not stopping. */
  healthy(): boolean
  status(): Promise<unknown>
  metrics(): Promise<{ contentType: string, body: string }>
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
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      send(405, 'application/json', JSON.stringify({ error: { code: 'method_not_allowed', message: 'use GET' } }))
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
        default:
          send(404, 'application/json', JSON.stringify({ error: { code: 'not_found', message: 'try /healthz, /status or /metrics' } }))
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

function bigintReplacer (_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value
}

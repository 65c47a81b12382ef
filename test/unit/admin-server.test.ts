import { request as httpRequest } from 'node:http'
import { expect } from 'chai'
import { ADMIN_TOKEN_HEADER, AdminActionError, startAdminServer } from '../../src/ops/admin-server.js'
import type { AdminServer } from '../../src/ops/admin-server.js'

interface Reply { status: number, body: { error?: { code: string, message: string } } & Record<string, unknown> }

/** A raw HTTP request, so the test can set any Host header. */
async function call (server: AdminServer, method: string, path: string, opts: { token?: string, host?: string, body?: string } = {}): Promise<Reply> {
  const url = new URL(server.url)
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (opts.token != null) headers[ADMIN_TOKEN_HEADER] = opts.token
    if (opts.host != null) headers.host = opts.host
    const req = httpRequest({ host: url.hostname, port: url.port, path, method, headers }, res => {
      let text = ''
      res.on('data', d => { text += String(d) })
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, body: JSON.parse(text === '' ? '{}' : text) }) })
    })
    req.on('error', reject)
    req.end(opts.body)
  })
}

describe('admin endpoint actions', () => {
  let server: AdminServer
  const acted: Array<{ path: string, body: Record<string, unknown> }> = []

  before(async () => {
    server = await startAdminServer('127.0.0.1', 0, {
      healthy: () => true,
      status: async () => ({ ok: true }),
      metrics: async () => ({ contentType: 'text/plain', body: '' }),
      read: async path => path === '/wallet' ? { balance: 5n } : undefined,
      act: async (path, body) => {
        if (path === '/refuse') throw new AdminActionError(409, 'not now')
        if (path !== '/do') return undefined
        acted.push({ path, body })
        return { done: true }
      },
      token: 'secret-token'
    })
  })

  after(async () => { await server.close() })

  it('runs an action only with the node\'s token', async () => {
    expect((await call(server, 'POST', '/do', { body: '{}' })).status).to.equal(401)
    expect((await call(server, 'POST', '/do', { token: 'secret-tokeX', body: '{}' })).status).to.equal(401)
    expect((await call(server, 'POST', '/do', { token: 'short', body: '{}' })).status).to.equal(401)
    expect(acted).to.deep.equal([])
    const ok = await call(server, 'POST', '/do', { token: 'secret-token', body: '{"amount":"5"}' })
    expect(ok).to.deep.equal({ status: 200, body: { done: true } })
    expect(acted).to.deep.equal([{ path: '/do', body: { amount: '5' } }])
  })

  it('answers unknown actions, refusals, bad and oversized bodies with their status', async () => {
    expect((await call(server, 'POST', '/nothing', { token: 'secret-token' })).status).to.equal(404)
    const refused = await call(server, 'POST', '/refuse', { token: 'secret-token' })
    expect(refused.status).to.equal(409)
    expect(refused.body.error?.message).to.equal('not now')
    expect((await call(server, 'POST', '/do', { token: 'secret-token', body: '{not json' })).status).to.equal(400)
    expect((await call(server, 'POST', '/do', { token: 'secret-token', body: '[1,2]' })).status).to.equal(400)
    expect((await call(server, 'POST', '/do', { token: 'secret-token', body: JSON.stringify({ pad: 'x'.repeat(20_000) }) })).status).to.equal(413)
  })

  it('serves extra reads, and refuses Host names that are not loopback', async () => {
    expect(await call(server, 'GET', '/wallet')).to.deep.equal({ status: 200, body: { balance: '5' } })
    expect((await call(server, 'GET', '/nowhere')).status).to.equal(404)
    expect((await call(server, 'GET', '/status', { host: 'evil.example:80' })).status).to.equal(403)
    expect((await call(server, 'POST', '/do', { token: 'secret-token', host: 'evil.example', body: '{}' })).status).to.equal(403)
    expect((await call(server, 'GET', '/status', { host: 'localhost:1234' })).status).to.equal(200)
  })
})

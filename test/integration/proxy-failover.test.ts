/**
 * A client whose proxy crashed: the next request goes to another proxy
 * (the dial fails before anything is sent), and the dead one sits out.
 */
import { expect } from 'chai'
import OpenAI from 'openai'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { ClientRole } from '../../src/roles/client/client-role.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { RunningNode } from '../../src/roles/runtime.js'

describe('a client whose proxy crashed', function () {
  this.timeout(60_000)
  const nodes: RunningNode[] = []
  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop().catch(() => {}) }))
    await cleanupTempDirs()
  })

  it('sends its next requests to another proxy and keeps the dead one out', async () => {
    const boot = await startNode(testConfig('bootstrap', await tempDir()))
    nodes.push(boot)
    const bootAddrs = boot.addrs()
    const proxies = await Promise.all([0, 1].map(async () => startNode(testConfig('proxy', await tempDir(), bootAddrs))))
    nodes.push(...proxies)
    nodes.push(await startNode(testConfig('worker', await tempDir(), bootAddrs)))
    const client = await startNode(testConfig('client', await tempDir(), bootAddrs))
    nodes.push(client)
    for (const p of proxies) await waitFor(() => (p.role as ProxyRole).registry.list().some(w => w.state === 'up'), 20_000, 'each proxy to attest the worker')
    const pool = (client.role as ClientRole).pool
    await waitFor(async () => (await pool.attested(AbortSignal.timeout(5_000))).length === 2, 20_000, 'the client to attest both proxies')
    const openai = new OpenAI({ baseURL: `${(client.role as ClientRole).apiUrl as string}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 })
    const ask = async (): Promise<string> => (await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'hi' }] })).choices[0].message.content ?? ''

    // the proxy the next job would go to dies without a goodbye
    const [first] = await pool.attested(AbortSignal.timeout(5_000))
    const dead = proxies.find(p => p.peerId.toString() === first) as RunningNode
    const alive = proxies.find(p => p !== dead) as RunningNode
    for (const c of dead.node.getConnections()) c.abort(new Error('crash'))
    await dead.stop()

    const relayedBefore = (alive.role as ProxyRole).jobs.status().relayed
    for (let i = 0; i < 3; i++) expect(await ask()).to.not.equal('')
    expect((alive.role as ProxyRole).jobs.status().relayed - relayedBefore).to.equal(3)
    expect(pool.status().proxies.find(p => p.peerId === first)?.demotedUntil).to.not.equal(null)
  })
})

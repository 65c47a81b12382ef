/**
 * Inference end to end over real libp2p on loopback: the official `openai`
 * SDK → the client's HTTP API → proxy → worker (synthetic backend), sealed
 * all the way. Failures before and after the first chunk, cancellation,
 * bad requests and malformed frames.
 */
import { expect } from 'chai'
import OpenAI from 'openai'
import { lpStream } from '@libp2p/utils'
import { startNode } from '../../src/roles/runtime.js'
import { JOB_PROTOCOL, WORK_PROTOCOL } from '../../src/p2p/constants.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { ClientRole } from '../../src/roles/client/client-role.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { WorkerRole } from '../../src/roles/worker/worker-role.js'

interface Swarm {
  boot: RunningNode
  proxy: RunningNode
  workers: RunningNode[]
  client: RunningNode
  openai: OpenAI
  apiUrl: string
}

export async function startSwarm (workerOverrides: Array<Record<string, unknown>>, clientOverrides: Record<string, unknown> = {}): Promise<Swarm> {
  const boot = await startNode(testConfig('bootstrap', await tempDir()))
  const bootAddrs = boot.addrs()
  const proxy = await startNode(testConfig('proxy', await tempDir(), bootAddrs))
  const workers = await Promise.all(workerOverrides.map(async o => startNode(testConfig('worker', await tempDir(), bootAddrs, o))))
  const client = await startNode(testConfig('client', await tempDir(), bootAddrs, clientOverrides))
  const proxyRole = proxy.role as ProxyRole
  await waitFor(() => proxyRole.registry.list().filter(w => w.state === 'up').length === workers.length, 20_000, 'the proxy to attest every worker')
  const clientRole = client.role as ClientRole
  await waitFor(() => clientRole.pool.known().length > 0, 20_000, 'the client to find the proxy')
  const apiUrl = clientRole.apiUrl as string
  return { boot, proxy, workers, client, apiUrl, openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 }) }
}

export async function stopSwarm (s: Swarm | undefined): Promise<void> {
  if (s == null) return
  await Promise.all([s.client, ...s.workers, s.proxy, s.boot].map(async n => { await n.stop() }))
}

const SYNTHETIC = { worker: { backend: 'synthetic', synthetic: { chunks: 12, chunkBytes: 32, intervalMs: 0, firstChunkDelayMs: 0 } } }

describe('inference jobs end to end (synthetic backend)', function () {
  this.timeout(60_000)
  let s: Swarm | undefined

  before(async () => {
    s = await startSwarm([SYNTHETIC, SYNTHETIC])
  })

  after(async () => {
    await stopSwarm(s)
    await cleanupTempDirs()
  })

  it('answers a non-streaming chat completion through the SDK', async () => {
    const swarm = s as Swarm
    const res = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'hello there' }] })
    expect(res.object).to.equal('chat.completion')
    expect(res.choices[0].message.content).to.have.length(12 * 32)
    expect(res.usage?.completion_tokens).to.equal(12)
    expect(res.usage?.prompt_tokens).to.be.greaterThan(0)
  })

  it('streams a chat completion with usage', async () => {
    const swarm = s as Swarm
    const stream = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'stream please' }], stream: true, stream_options: { include_usage: true } })
    let text = ''
    let chunks = 0
    let usage: OpenAI.CompletionUsage | undefined | null
    for await (const chunk of stream) {
      chunks++
      text += chunk.choices[0]?.delta?.content ?? ''
      if (chunk.usage != null) usage = chunk.usage
    }
    expect(text).to.have.length(12 * 32)
    expect(chunks).to.be.greaterThan(12)
    expect(usage?.completion_tokens).to.equal(12)
  })
})

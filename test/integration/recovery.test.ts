/**
 * Recovery from a proxy that is killed (kill -9 of its process) and started
 * again on its data dir: it comes back on the same port, the client says
 * what is down while it is gone (503 proxy_unreachable with Retry-After), and
 * the client's requests succeed again within 2 s of the proxy being back.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import OpenAI from 'openai'
import { startNode } from '../../src/roles/runtime.js'
import { readNodeFile } from '../../src/ops/node-file.js'
import { CliHarness } from '../cli-harness.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { ClientRole } from '../../src/roles/client/client-role.js'
import type { Started } from '../cli-harness.js'

describe('recovery: a proxy killed and restarted', function () {
  this.timeout(120_000)
  const cli = new CliHarness(() => ({ DEBUG: '' }))
  const nodes: RunningNode[] = []
  after(async () => {
    cli.killAll()
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await cleanupTempDirs()
  })

  it('comes back on the same port, and the client succeeds within 2 s of it being back', async () => {
    const boot = await startNode(testConfig('bootstrap', await tempDir()))
    nodes.push(boot)
    const worker = await startNode(testConfig('worker', await tempDir(), boot.addrs(), { worker: { backend: 'synthetic', synthetic: { chunks: 4, chunkBytes: 16, intervalMs: 0, firstChunkDelayMs: 0 } } }))
    nodes.push(worker)
    const client = await startNode(testConfig('client', await tempDir(), boot.addrs()))
    nodes.push(client)
    const openai = new OpenAI({ baseURL: `${(client.role as ClientRole).apiUrl as string}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 20_000 })
    const ask = async (): Promise<unknown> => await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'still there?' }] }).then(() => 'ok', (e: unknown) => e)

    // the proxy is a process of its own, on a data dir that outlives it
    const dataDir = await tempDir()
    const config = join(await tempDir(), 'proxy.json')
    await writeFile(config, JSON.stringify({
      role: 'proxy', network: 'local', dataDir, listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: boot.addrs(), useDefaultBootstrap: false,
      logLevel: 'warn', admin: { enabled: false }, dht: { addressFilter: 'all' }
    }))
    const startProxy = async (): Promise<{ proc: Started, port: string }> => {
      const proc = cli.start(['node', '--config', config])
      let port = ''
      await waitFor(async () => {
        const file = await readNodeFile(dataDir)
        port = /\/tcp\/(\d+)\//.exec(file?.addrs[0] ?? '')?.[1] ?? ''
        return port !== '' && file?.pid === proc.child.pid
      }, 30_000, `the proxy to start; its output:\n${proc.output()}`)
      return { proc, port }
    }
    const first = await startProxy()
    await waitFor(async () => (await ask()) === 'ok', 30_000, 'the client to get an answer through the proxy')

    first.proc.child.kill('SIGKILL')
    await first.proc.exited
    // while it is gone: a clear 503 that names the proxy, with a retry hint
    const down = await ask() as InstanceType<typeof OpenAI.APIError>
    expect(down).to.be.instanceOf(OpenAI.APIError)
    expect(down.status).to.equal(503)
    expect((down.error as { code?: string } | undefined)?.code).to.equal('proxy_unreachable')
    expect(down.message).to.match(/proxy 12D3KooW\w+ cannot be reached/)
    expect(Number(down.headers?.get('retry-after'))).to.be.above(0)

    const second = await startProxy()
    const backAt = Date.now()
    expect(second.port, 'the same listen port as before').to.equal(first.port)
    let answered = false
    while (!answered && Date.now() - backAt < 10_000) {
      answered = (await ask()) === 'ok'
      if (!answered) await new Promise(resolve => setTimeout(resolve, 100))
    }
    const tookMs = Date.now() - backAt
    expect(answered, 'the client got an answer again').to.equal(true)
    console.log(`      answered again ${tookMs} ms after the proxy was back`)
    expect(tookMs, `answered ${tookMs} ms after the proxy was back`).to.be.at.most(2_000)
    second.proc.child.kill('SIGTERM')
    await second.proc.exited
  })
})

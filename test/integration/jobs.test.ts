/**
 * Inference end to end over real libp2p on loopback: the official `openai`
 * SDK → the client's HTTP API → proxy → worker (synthetic backend), sealed
 * all the way. Retries before the first chunk, failures after it,
 * cancellation, deadlines, bad requests, malformed frames, and what the
 * proxy gets to see.
 */
import { expect } from 'chai'
import OpenAI from 'openai'
import { lpStream } from '@libp2p/utils'
import { startNode } from '../../src/roles/runtime.js'
import { JOB_PROTOCOL, WORK_PROTOCOL } from '../../src/p2p/constants.js'
import { ErrorCode, Frame } from '../../src/gen/framing.pb.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { ClientRole } from '../../src/roles/client/client-role.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { WorkerRole } from '../../src/roles/worker/worker-role.js'
import type { Connection, Stream } from '@libp2p/interface'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Swarm {
  boot: RunningNode
  proxy: RunningNode
  workers: RunningNode[]
  client: RunningNode
  openai: OpenAI
  apiUrl: string
}

export async function startSwarm (workerOverrides: Array<Record<string, unknown>>, options: { client?: Record<string, unknown>, proxy?: Record<string, unknown> } = {}): Promise<Swarm> {
  const boot = await startNode(testConfig('bootstrap', await tempDir()))
  const bootAddrs = boot.addrs()
  const proxy = await startNode(testConfig('proxy', await tempDir(), bootAddrs, options.proxy))
  const workers = await Promise.all(workerOverrides.map(async o => startNode(testConfig('worker', await tempDir(), bootAddrs, o))))
  const client = await startNode(testConfig('client', await tempDir(), bootAddrs, options.client))
  const proxyRole = proxy.role as ProxyRole
  await waitFor(() => proxyRole.registry.list().filter(w => w.state === 'up').length === workers.length, 20_000, 'the proxy to attest every worker')
  const clientRole = client.role as ClientRole
  await waitFor(() => clientRole.pool.known().length > 0, 20_000, 'the client to find the proxy')
  const apiUrl = clientRole.apiUrl as string
  return { boot, proxy, workers, client, apiUrl, openai: new OpenAI({ baseURL: `${apiUrl}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 }) }
}

export async function stopSwarm (s: Swarm | undefined): Promise<void> {
  if (s == null) return
  await Promise.all([s.client, ...s.workers, s.proxy, s.boot].map(async n => { await n.stop() }))
}

export function synthetic (tuning: Record<string, number> = {}, models?: unknown[]): Record<string, unknown> {
  return { worker: { backend: 'synthetic', synthetic: { chunks: 12, chunkBytes: 32, intervalMs: 0, firstChunkDelayMs: 0, ...tuning }, ...(models == null ? {} : { models }) } }
}

const workerRole = (n: RunningNode): WorkerRole => n.role as WorkerRole
const proxyRole = (s: Swarm): ProxyRole => s.proxy.role as ProxyRole

/** The worker running a job now, once one is. */
async function busyWorker (s: Swarm): Promise<RunningNode> {
  let found: RunningNode | undefined
  await waitFor(() => {
    found = s.workers.find(w => Object.values(workerRole(w).work?.status().running ?? {}).some(n => n > 0))
    return found != null
  }, 10_000, 'a worker to take the job')
  return found as RunningNode
}

/** Like a crash seen from the network: every connection reset at once, then the node stops. */
async function crash (node: RunningNode): Promise<void> {
  for (const c of node.node.getConnections()) c.abort(new Error('crash'))
  await node.stop()
}

async function post (url: string, body: string | Uint8Array<ArrayBuffer>, contentType = 'application/json'): Promise<{ status: number, json: { error?: { message: string, param: string | null, code: string } } }> {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body })
  return { status: res.status, json: await res.json() as { error?: { message: string, param: string | null, code: string } } }
}

describe('inference jobs end to end', function () {
  this.timeout(60_000)

  after(cleanupTempDirs)

  describe('with two synthetic workers', () => {
    let s: Swarm | undefined

    before(async () => {
      s = await startSwarm([synthetic(), synthetic()])
    })

    after(async () => { await stopSwarm(s) })

    it('answers a non-streaming chat completion through the official SDK', async () => {
      const swarm = s as Swarm
      const res = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'hello there' }] })
      expect(res.object).to.equal('chat.completion')
      expect(res.model).to.equal('cocoon-synthetic')
      expect(res.choices[0].message.role).to.equal('assistant')
      expect(res.choices[0].message.content).to.have.length(12 * 32)
      expect(res.choices[0].finish_reason).to.equal('stop')
      expect(res.usage?.completion_tokens).to.equal(12)
      expect(res.usage?.prompt_tokens).to.be.greaterThan(0)
      const cocoon = (res as unknown as { cocoon: { worker: string, proxy: string } }).cocoon
      expect(swarm.workers.map(w => w.peerId.toString())).to.include(cocoon.worker)
      expect(cocoon.proxy).to.equal(swarm.proxy.peerId.toString())
      const entry = proxyRole(swarm).registry.get(cocoon.worker)
      expect(entry?.jobs.ok).to.equal(1)
      expect(entry?.latencyMs).to.be.a('number').and.greaterThan(0)
    })

    it('streams a chat completion, with usage at the end', async () => {
      const swarm = s as Swarm
      const stream = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'stream please' }], stream: true, stream_options: { include_usage: true } })
      let text = ''
      let contentChunks = 0
      let usage: OpenAI.CompletionUsage | undefined | null
      for await (const chunk of stream) {
        const piece = chunk.choices[0]?.delta?.content ?? ''
        if (piece !== '') contentChunks++
        text += piece
        if (chunk.usage != null) usage = chunk.usage
      }
      expect(text).to.have.length(12 * 32)
      expect(contentChunks).to.equal(12)
      expect(usage?.completion_tokens).to.equal(12)
    })

    it('answers completions, streaming and not, and honours max_tokens', async () => {
      const swarm = s as Swarm
      const res = await swarm.openai.completions.create({ model: 'cocoon-synthetic', prompt: 'Once upon a time', max_tokens: 5 })
      expect(res.object).to.equal('text_completion')
      expect(res.choices[0].text).to.have.length(5 * 32)
      expect(res.choices[0].finish_reason).to.equal('length')
      expect(res.usage?.completion_tokens).to.equal(5)
      const stream = await swarm.openai.completions.create({ model: 'cocoon-synthetic', prompt: 'Once upon a time', max_tokens: 5, stream: true })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? ''
      expect(text).to.equal(res.choices[0].text)
    })

    it('lists the swarm\'s models with worker counts and prices', async () => {
      const swarm = s as Swarm
      const list = await swarm.openai.models.list()
      const model = list.data.find(m => m.id === 'cocoon-synthetic') as unknown as { workers: number, synthetic: boolean, pricing: { completion_per_m_nanoton: { min: string, max: string } } }
      expect(model).to.not.equal(undefined)
      expect(model.workers).to.equal(2)
      expect(model.synthetic).to.equal(true)
      expect(model.pricing.completion_per_m_nanoton.min).to.equal('80000000')
    })

    it('answers bad requests with the right OpenAI-style error', async () => {
      const swarm = s as Swarm
      const url = `${swarm.apiUrl}/v1/chat/completions`
      const ok = { model: 'cocoon-synthetic', messages: [{ role: 'user' as const, content: 'hi' }] }
      const unknown = await post(url, JSON.stringify({ ...ok, tools_please: true }))
      expect(unknown.status).to.equal(400)
      expect(unknown.json.error?.param).to.equal('tools_please')
      const noModel = await post(url, JSON.stringify({ messages: ok.messages }))
      expect(noModel.status).to.equal(400)
      expect(noModel.json.error?.param).to.equal('model')
      const negative = await post(url, JSON.stringify({ ...ok, max_tokens: -3 }))
      expect(negative.status).to.equal(400)
      expect(negative.json.error?.param).to.equal('max_tokens')
      const invalid = await post(url, '{"model": "cocoon-synthetic", "messages": [')
      expect(invalid.status).to.equal(400)
      const huge = await post(url, new Uint8Array(10 * 1024 * 1024).fill(0x20))
      expect(huge.status).to.equal(413)
      const err = await swarm.openai.chat.completions.create({ model: 'no-such-model', messages: ok.messages }).catch(e => e as InstanceType<typeof OpenAI.APIError>)
      expect(err).to.be.instanceOf(OpenAI.NotFoundError)
      // the node still serves after all that
      const res = await swarm.openai.chat.completions.create(ok)
      expect(res.choices[0].message.content).to.have.length(12 * 32)
    })

    it('never lets the proxy see the prompt or the answer', async () => {
      const swarm = s as Swarm
      const seen: Uint8Array[] = []
      const tap = (stream: Stream): void => {
        stream.addEventListener('message', evt => { seen.push(toBytes(evt.data)) })
        const send = stream.send.bind(stream)
        stream.send = (data: Uint8Array | Uint8ArrayList) => { seen.push(toBytes(data)); return send(data) }
      }
      const service = proxyRole(swarm).jobs as unknown as { serve(stream: Stream, connection: Connection): Promise<void> }
      const serve = service.serve.bind(service)
      service.serve = async (stream, connection) => { tap(stream); return serve(stream, connection) }
      const dial = swarm.proxy.node.dialProtocol.bind(swarm.proxy.node)
      swarm.proxy.node.dialProtocol = (async (...args: Parameters<typeof dial>) => {
        const stream = await dial(...args)
        if (stream.protocol === WORK_PROTOCOL) tap(stream)
        return stream
      }) as typeof dial
      // the job service captured `serve` at start; route new streams through the tapped one
      await swarm.proxy.node.unhandle(JOB_PROTOCOL)
      await swarm.proxy.node.handle(JOB_PROTOCOL, async (stream, connection) => service.serve(stream, connection), { maxInboundStreams: 256 })
      try {
        const secret = 'the-secret-prompt-0xC0C00N-please-keep-quiet'
        const res = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: secret }] })
        const answer = res.choices[0].message.content as string
        const all = Buffer.concat(seen)
        const requestId = (res as unknown as { cocoon: { request_id: string } }).cocoon.request_id
        expect(all.includes(Buffer.from(requestId)), 'the tap saw the clear header').to.equal(true)
        expect(all.includes(Buffer.from(secret)), 'prompt visible to the proxy').to.equal(false)
        expect(all.includes(Buffer.from(answer.slice(0, 24))), 'answer visible to the proxy').to.equal(false)
      } finally {
        swarm.proxy.node.dialProtocol = dial
        service.serve = serve
      }
    })

    it('survives malformed and oversized frames on /cocoon/job and /cocoon/work', async () => {
      const swarm = s as Swarm
      for (const [target, protocol] of [[swarm.proxy, JOB_PROTOCOL], [swarm.workers[0], WORK_PROTOCOL]] as const) {
        // a well-framed payload that is not a Frame: a BAD_REQUEST error frame
        const stream = await swarm.client.node.dialProtocol(target.peerId, protocol)
        const lp = lpStream(stream)
        await lp.write(new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]))
        const answer = Frame.decode(await lp.read({ signal: AbortSignal.timeout(5_000) }))
        expect(answer.error?.code, `${protocol} malformed`).to.equal(ErrorCode.BAD_REQUEST)
        // a length prefix far over the limit: a TOO_LARGE error frame
        const big = await swarm.client.node.dialProtocol(target.peerId, protocol)
        const bigLp = lpStream(big)
        big.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]))
        const refusal = Frame.decode(await bigLp.read({ signal: AbortSignal.timeout(5_000) }))
        expect(refusal.error?.code, `${protocol} oversized`).to.equal(ErrorCode.TOO_LARGE)
        big.abort(new Error('done'))
        expect(target.node.status).to.equal('started')
      }
      const res = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'still there?' }] })
      expect(res.choices[0].message.content).to.have.length(12 * 32)
    })
  })

  describe('with a llama.cpp worker (generated synthetic model)', () => {
    let s: Swarm | undefined

    before(async function () {
      this.timeout(120_000)
      s = await startSwarm([{ worker: { backend: 'llama', llama: { threads: 1, gpu: false } } }])
    })

    after(async () => { await stopSwarm(s) })

    it('streams and answers chat completions with the model\'s own token counts', async () => {
      const swarm = s as Swarm
      const messages = [{ role: 'user' as const, content: 'Tell me about peer-to-peer networks.' }]
      const res = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages, max_tokens: 16, temperature: 0, seed: 7 })
      expect(res.choices[0].message.content).to.be.a('string').and.not.equal('')
      expect(res.usage?.completion_tokens).to.be.within(1, 16)
      expect(res.usage?.prompt_tokens).to.be.greaterThan(5)
      const stream = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages, max_tokens: 16, temperature: 0, seed: 7, stream: true, stream_options: { include_usage: true } })
      let text = ''
      let usage: OpenAI.CompletionUsage | null | undefined
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? ''
        if (chunk.usage != null) usage = chunk.usage
      }
      expect(text, 'greedy decoding is deterministic').to.equal(res.choices[0].message.content)
      expect(usage?.completion_tokens).to.equal(res.usage?.completion_tokens)
      expect(usage?.prompt_tokens).to.equal(res.usage?.prompt_tokens)
    })

    it('answers completions, streaming and not', async () => {
      const swarm = s as Swarm
      const res = await swarm.openai.completions.create({ model: 'cocoon-synthetic', prompt: 'The network', max_tokens: 8, temperature: 0 })
      expect(res.choices[0].text).to.not.equal('')
      expect(res.usage?.completion_tokens).to.be.within(1, 8)
      const stream = await swarm.openai.completions.create({ model: 'cocoon-synthetic', prompt: 'The network', max_tokens: 8, temperature: 0, stream: true })
      let text = ''
      for await (const chunk of stream) text += chunk.choices[0]?.text ?? ''
      expect(text).to.equal(res.choices[0].text)
    })

    it('says in /v1/models that the model is a synthetic test model', async () => {
      const swarm = s as Swarm
      const list = await swarm.openai.models.list()
      const model = list.data.find(m => m.id === 'cocoon-synthetic') as unknown as { synthetic: boolean, description: string }
      expect(model.synthetic).to.equal(true)
      expect(model.description).to.match(/random weights/)
    })
  })

  describe('failures and cancellation', () => {
    let s: Swarm | undefined

    afterEach(async () => {
      await stopSwarm(s)
      s = undefined
    })

    it('retries on the other worker when the first dies before its first chunk', async () => {
      s = await startSwarm([synthetic({ firstChunkDelayMs: 1_500 }), synthetic({ firstChunkDelayMs: 1_500 })])
      const swarm = s
      const pending = swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'retry me' }] })
      const first = await busyWorker(swarm)
      const firstId = first.peerId.toString()
      await crash(first)
      const res = await pending
      const cocoon = (res as unknown as { cocoon: { worker: string } }).cocoon
      expect(cocoon.worker).to.not.equal(firstId)
      expect(res.choices[0].message.content).to.have.length(12 * 32)
      expect(proxyRole(swarm).jobs.status().retried).to.equal(1)
    })

    it('ends the stream with a clear error when the worker dies mid-stream, and lowers its success rate', async () => {
      s = await startSwarm([synthetic({ chunks: 40, intervalMs: 50 }), synthetic({ chunks: 40, intervalMs: 50 })])
      const swarm = s
      // the registry's own record of each failure (the entry itself may go when the dead worker expires)
      const failures: Array<{ peerId: string, failed: number, successRate: number }> = []
      proxyRole(swarm).registry.addEventListener('worker:updated', evt => {
        if (evt.detail.jobs.failed > 0) failures.push({ peerId: evt.detail.peerId, failed: evt.detail.jobs.failed, successRate: evt.detail.successRate })
      })
      const stream = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'long answer' }], stream: true })
      let received = 0
      let victim: string | undefined
      const error = await (async () => {
        for await (const chunk of stream) {
          if ((chunk.choices[0]?.delta?.content ?? '') !== '') received++
          if (received === 3 && victim == null) {
            const busy = await busyWorker(swarm)
            victim = busy.peerId.toString()
            void crash(busy)
          }
        }
        return undefined
      })().catch(err => err as Error)
      expect(error, 'the stream must end with an error').to.be.instanceOf(Error)
      expect((error as Error).message).to.match(/failed after \d+ chunks/)
      expect(received).to.be.within(3, 39)
      await waitFor(() => failures.some(f => f.peerId === victim), 5_000, 'the failure to be recorded')
      const recorded = failures.find(f => f.peerId === victim)
      expect(recorded?.failed).to.equal(1)
      expect(recorded?.successRate).to.be.lessThan(1)
    })

    it('stops the worker\'s generation within 100 ms of a client abort', async () => {
      s = await startSwarm([synthetic({ chunks: 400, intervalMs: 20 })])
      const swarm = s
      const worker = workerRole(swarm.workers[0])
      const controller = new AbortController()
      const stream = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'abort me' }], stream: true }, { signal: controller.signal })
      let received = 0
      let abortedAtMs = 0
      await (async () => {
        for await (const chunk of stream) {
          if ((chunk.choices[0]?.delta?.content ?? '') !== '') received++
          if (received === 5) {
            abortedAtMs = Date.now()
            controller.abort()
          }
        }
      })().catch(() => undefined)
      await waitFor(() => (worker.work?.status().cancelled ?? 0) === 1, 5_000, 'the worker to count the cancellation')
      const [record] = worker.work?.status().recentCancels ?? []
      expect(record.stoppedAtMs - abortedAtMs).to.be.lessThan(100)
      const tokens = worker.backend?.status().tokens ?? 0
      expect(tokens).to.be.lessThan(400)
      await new Promise(resolve => setTimeout(resolve, 200))
      expect(worker.backend?.status().tokens, 'no tokens after the abort').to.equal(tokens)
      expect(worker.backend?.status().cancelled).to.equal(1)
    })

    it('answers 504 when the job outlives its deadline, and 402 under the price cap', async () => {
      s = await startSwarm([synthetic({ firstChunkDelayMs: 5_000 })], { client: { client: { requestTimeoutMs: 1_000 } } })
      const swarm = s
      const started = Date.now()
      const slow = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'too slow' }] }).catch(err => err as InstanceType<typeof OpenAI.APIError>)
      expect(slow).to.be.instanceOf(OpenAI.APIError)
      expect((slow as InstanceType<typeof OpenAI.APIError>).status).to.equal(504)
      expect(Date.now() - started).to.be.lessThan(3_000)
      await waitFor(() => Object.values(workerRole(swarm.workers[0]).work?.status().running ?? {}).every(n => n === 0), 2_000, 'the worker to drop the expired job')
      // deadlines cascade: the worker got less time than the client and gave up first, so the
      // 504 carries the worker's own timeout rather than the client's or the proxy's
      expect((slow as InstanceType<typeof OpenAI.APIError>).message).to.match(/ms deadline on the worker/)
      const workStatus = workerRole(swarm.workers[0]).work?.status()
      expect(workStatus?.failed).to.equal(1)
      expect(workStatus?.cancelled).to.equal(0)
      await swarm.client.stop()
      swarm.client = await startNode(testConfig('client', await tempDir(), swarm.boot.addrs(), { client: { maxPriceCompletionPerM: 1_000 } }))
      const clientRole = swarm.client.role as ClientRole
      await waitFor(() => clientRole.pool.known().length > 0, 20_000, 'the client to find the proxy')
      const cheap = new OpenAI({ baseURL: `${clientRole.apiUrl as string}/v1`, apiKey: 'unused', maxRetries: 0 })
      const err = await cheap.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'cheap' }] }).catch(e => e as InstanceType<typeof OpenAI.APIError>)
      expect((err as InstanceType<typeof OpenAI.APIError>).status).to.equal(402)
      expect((err as InstanceType<typeof OpenAI.APIError>).message).to.match(/price cap/)
    })

    it('caps the jobs one client may run at once (429)', async () => {
      s = await startSwarm([synthetic({ firstChunkDelayMs: 800 })], { proxy: { proxy: { maxJobsPerClient: 1 } } })
      const swarm = s
      const first = swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'one' }] })
      await busyWorker(swarm)
      const second = await swarm.openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'two' }] }).catch(e => e as InstanceType<typeof OpenAI.APIError>)
      expect(second).to.be.instanceOf(OpenAI.RateLimitError)
      expect((await first).choices[0].message.content).to.have.length(12 * 32)
    })
  })
})

describe('admission: requests wait in line for a free worker', function () {
  this.timeout(120_000)
  let s: Swarm | undefined
  afterEach(async () => { await stopSwarm(s); s = undefined })
  after(cleanupTempDirs)

  /** Streams one answer with the official SDK; the text, or the error. */
  const stream = async (openai: OpenAI, i: number): Promise<string | InstanceType<typeof OpenAI.APIError>> => {
    try {
      const chunks = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: `request ${i}` }], stream: true })
      let text = ''
      for await (const c of chunks) text += c.choices[0]?.delta?.content ?? ''
      return text
    } catch (err) {
      return err as InstanceType<typeof OpenAI.APIError>
    }
  }

  it('completes 20 and then 200 concurrent streaming requests on 2 workers x 4 slots, none refused, and reports the wait', async () => {
    // 10 chunks 20 ms apart: each job holds its slot about 200 ms
    s = await startSwarm([synthetic({ chunks: 10, intervalMs: 20 }), synthetic({ chunks: 10, intervalMs: 20 })])
    const swarm = s
    for (const n of [20, 200]) {
      const answers = await Promise.all(Array.from({ length: n }, async (_, i) => await stream(swarm.openai, i)))
      const failed = answers.filter(a => typeof a !== 'string')
      expect(failed.map(String), `${n} concurrent requests`).to.deep.equal([])
      for (const a of answers) expect(a).to.have.length(10 * 32)
    }
    // no worker was ever asked to run more than its 4 slots: none refused a job
    for (const w of swarm.workers) expect(workerRole(w).work?.status().failed).to.equal(0)
    const clientMetrics = await swarm.client.metrics.registry.metrics()
    const proxyMetrics = await swarm.proxy.metrics.registry.metrics()
    expect(clientMetrics).to.match(/cocoon_queue_wait_seconds_count\{side="client",outcome="admitted"\} [1-9]/)
    expect(proxyMetrics).to.match(/cocoon_queue_wait_seconds_count\{side="proxy",outcome="admitted"\} [1-9]/)
    expect(proxyMetrics).to.match(/cocoon_queue_length\{side="proxy"\} 0/)
  })

  it('answers 429 rate_limit_exceeded with Retry-After only when the line is full', async () => {
    s = await startSwarm([synthetic({ chunks: 10, intervalMs: 30 })], { client: { client: { maxConcurrent: 1, queueDepth: 2 } } })
    const swarm = s
    const answers = await Promise.all(Array.from({ length: 6 }, async (_, i) => await stream(swarm.openai, i)))
    const ok = answers.filter(a => typeof a === 'string')
    const refused = answers.filter((a): a is InstanceType<typeof OpenAI.APIError> => typeof a !== 'string')
    expect(ok, 'one running and two waiting complete').to.have.length(3)
    expect(refused).to.have.length(3)
    for (const r of refused) {
      expect(r.status).to.equal(429)
      expect(r.type).to.equal('rate_limit_exceeded')
      expect(Number(r.headers?.get('retry-after'))).to.be.above(0)
    }
  })
})

function toBytes (data: Uint8Array | Uint8ArrayList): Uint8Array {
  return data instanceof Uint8Array ? data : data.subarray()
}

import { createServer } from 'node:http'
import { expect } from 'chai'
import { InferenceError } from '../../src/inference/types.js'
import { collect, failure } from './backend-events.js'
import { OpenAIUpstreamBackend } from '../../src/roles/worker/backends/openai-upstream.js'
import { waitFor } from '../../src/ops/wait-for.js'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { BackendEvent, InferenceRequest } from '../../src/inference/types.js'
import type { OpenAIUpstreamInit } from '../../src/roles/worker/backends/openai-upstream.js'

const KEY = 'sk-test-secret-0123456789'

interface Recorded {
  method: string
  url: string
  authorization: string | undefined
  body: Record<string, unknown> | undefined
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: Record<string, unknown> | undefined) => void

const sse = (res: ServerResponse, events: unknown[]): void => {
  res.writeHead(200, { 'content-type': 'text/event-stream' })
  // split across writes mid-line, as a real stream may be
  const text = events.map(e => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join('')
  const cut = Math.floor(text.length / 2)
  res.write(text.slice(0, cut))
  setTimeout(() => { res.end(text.slice(cut)) }, 5)
}

const USAGE = { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14, prompt_tokens_details: { cached_tokens: 4 }, completion_tokens_details: { reasoning_tokens: 1 } }

const chatStream = (usage: boolean): unknown[] => [
  { id: 'c1', object: 'chat.completion.chunk', model: 'up-model', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { reasoning_content: 'hmm' }, finish_reason: null }] },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'Hel', tool_calls: [] }, logprobs: { content: [] }, finish_reason: null }] },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: 'lo' }, finish_reason: null }] },
  { id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  ...(usage ? [{ id: 'c1', object: 'chat.completion.chunk', choices: [], usage: USAGE }] : []),
  '[DONE]'
]

/** A stand-in OpenAI-compatible server on 127.0.0.1 that records what it is sent. */
class FakeUpstream {
  readonly requests: Recorded[] = []
  /** Answers POSTs (the jobs). */
  handler: Handler = (req, res) => { this.defaultHandler(req, res) }
  /** Answers GETs (the health probe). */
  probeHandler: Handler = (req, res) => { this.defaultHandler(req, res) }
  port = 0
  private server: Server | undefined

  async listen (port = 0): Promise<void> {
    const server = createServer((req, res) => {
      const parts: Buffer[] = []
      req.on('data', (b: Buffer) => parts.push(b))
      req.on('end', () => {
        const raw = Buffer.concat(parts).toString()
        const body = raw === '' ? undefined : JSON.parse(raw) as Record<string, unknown>
        this.requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body })
        if (req.method === 'POST') this.handler(req, res, body)
        else this.probeHandler(req, res, body)
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => { resolve() })
    })
    this.server = server
    this.port = (server.address() as AddressInfo).port
  }

  async close (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  }

  get url (): string {
    return `http://127.0.0.1:${this.port}/v1`
  }

  posts (): Recorded[] {
    return this.requests.filter(r => r.method === 'POST')
  }

  private defaultHandler (req: IncomingMessage, res: ServerResponse): void {
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'up-model', object: 'model' }] }))
    } else if (req.method === 'POST' && req.url === '/v1/chat/completions') {
      sse(res, chatStream(true))
    } else if (req.method === 'POST' && req.url === '/v1/completions') {
      sse(res, [
        { id: 'p1', object: 'text_completion', choices: [{ index: 0, text: 'one', logprobs: null, finish_reason: null }] },
        { id: 'p1', object: 'text_completion', choices: [{ index: 0, text: ' two', finish_reason: 'length' }] },
        { id: 'p1', object: 'text_completion', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } },
        '[DONE]'
      ])
    } else {
      res.writeHead(404).end()
    }
  }
}

function request (kind: InferenceRequest['kind'] = 'chat', extra: Partial<InferenceRequest> = {}): InferenceRequest {
  return {
    kind,
    model: 'net-model',
    body: kind === 'chat' ? { model: 'net-model', messages: [{ role: 'user', content: 'Hi there' }], temperature: 0.5, max_completion_tokens: 999 } : { model: 'net-model', prompt: 'Count:' },
    maxTokens: 64,
    signal: new AbortController().signal,
    ...extra
  }
}


async function freePort (): Promise<number> {
  const probe = new FakeUpstream()
  await probe.listen()
  const port = probe.port
  await probe.close()
  return port
}

describe('openai upstream backend', () => {
  let upstream: FakeUpstream
  let backend: OpenAIUpstreamBackend | undefined
  let logs: string[]

  const make = (init: Partial<OpenAIUpstreamInit> = {}): OpenAIUpstreamBackend => {
    backend = new OpenAIUpstreamBackend({
      url: upstream.url,
      apiKey: KEY,
      models: [{ name: 'net-model', contextLength: 8192, upstreamModel: 'up-model' }],
      healthIntervalMs: 100,
      log: line => logs.push(line),
      ...init
    })
    return backend
  }

  beforeEach(async () => {
    logs = []
    upstream = new FakeUpstream()
    await upstream.listen()
  })

  afterEach(async () => {
    await backend?.stop()
    backend = undefined
    await upstream.close()
    expect(logs.join('\n')).to.not.include(KEY)
  })

  it('forwards a chat job as a stream with usage and passes chunks and usage back', async () => {
    const b = make()
    await b.start()
    expect(b.status()).to.deep.include({ available: true, detail: '' })
    expect(upstream.requests[0]).to.deep.include({ method: 'GET', url: '/v1/models', authorization: `Bearer ${KEY}` })

    const events = await collect(b.generate(request()))
    const post = upstream.posts()[0]
    expect(post.url).to.equal('/v1/chat/completions')
    expect(post.authorization).to.equal(`Bearer ${KEY}`)
    expect(post.body).to.deep.equal({
      model: 'up-model',
      messages: [{ role: 'user', content: 'Hi there' }],
      temperature: 0.5,
      max_tokens: 64,
      stream: true,
      stream_options: { include_usage: true }
    })
    expect(events).to.deep.equal([
      { type: 'chunk', chunk: { choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] } },
      { type: 'chunk', chunk: { choices: [{ index: 0, delta: { reasoning_content: 'hmm' }, finish_reason: null }] } },
      { type: 'chunk', chunk: { choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }] } },
      { type: 'chunk', chunk: { choices: [{ index: 0, delta: { content: 'lo' }, finish_reason: null }] } },
      { type: 'chunk', chunk: { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] } },
      { type: 'done', usage: { promptTokens: 11, cachedTokens: 4, completionTokens: 3, reasoningTokens: 1 }, finishReason: 'stop' }
    ])
    expect(b.status()).to.deep.include({ running: 0, completed: 1, tokens: 3 })
  })

  it('forwards a completion job to /completions', async () => {
    const b = make()
    const events = await collect(b.generate(request('completion')))
    expect(upstream.posts()[0].url).to.equal('/v1/completions')
    expect(upstream.posts()[0].body).to.deep.include({ model: 'up-model', prompt: 'Count:', max_tokens: 64, stream: true, stream_options: { include_usage: true } })
    expect(events).to.deep.equal([
      { type: 'chunk', chunk: { choices: [{ index: 0, text: 'one', finish_reason: null }] } },
      { type: 'chunk', chunk: { choices: [{ index: 0, text: ' two', finish_reason: 'length' }] } },
      { type: 'done', usage: { promptTokens: 5, cachedTokens: 0, completionTokens: 2, reasoningTokens: 0 }, finishReason: 'length' }
    ])
  })

  it('appends /v1 to a bare URL and drops trailing slashes', async () => {
    expect(make({ url: `http://127.0.0.1:${upstream.port}` }).baseUrl).to.equal(`http://127.0.0.1:${upstream.port}/v1`)
    expect(make({ url: `http://127.0.0.1:${upstream.port}/v1//` }).baseUrl).to.equal(`http://127.0.0.1:${upstream.port}/v1`)
    expect(make({ url: 'http://127.0.0.1:1/api/openai/' }).baseUrl).to.equal('http://127.0.0.1:1/api/openai')
    expect(() => make({ url: 'http://user:pw@127.0.0.1:1/v1' })).to.throw(/apiKey/)
    const b = make({ url: `http://127.0.0.1:${upstream.port}/` })
    await collect(b.generate(request()))
    expect(upstream.posts()[0].url).to.equal('/v1/chat/completions')
    expect(b.models()).to.deep.equal([{ name: 'net-model', contextLength: 8192, synthetic: false, description: `served by upstream 127.0.0.1:${upstream.port} as up-model` }])
  })

  it('estimates usage when the upstream sends none, and says so once', async () => {
    upstream.handler = (_req, res) => { sse(res, chatStream(false)) }
    const b = make()
    const first = await collect(b.generate(request()))
    // 'Hi there' is 8 bytes → 2; three pieces carried text ('hmm', 'Hel', 'lo')
    expect(first.at(-1)).to.deep.equal({ type: 'done', usage: { promptTokens: 2, cachedTokens: 0, completionTokens: 3, reasoningTokens: 1 }, finishReason: 'stop' })
    await collect(b.generate(request()))
    expect(logs.filter(l => l.includes('sent no usage'))).to.have.length(1)
  })

  it('maps upstream HTTP errors to inference errors, without the API key', async () => {
    const answer = (status: number, body: unknown, headers: Record<string, string> = {}): void => {
      upstream.handler = (_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers })
        res.end(JSON.stringify(body))
      }
    }
    const b = make()
    answer(400, { object: 'error', message: `max_tokens too large for key ${KEY}`, type: 'BadRequestError', code: 400 })
    let err = await failure(b.generate(request()))
    expect(err.code).to.equal('bad_request')
    expect(err.message).to.include('max_tokens too large')
    expect(err.message).to.not.include(KEY)

    answer(422, { detail: [{ loc: ['body', 'temperature'], msg: 'bad temperature' }] })
    err = await failure(b.generate(request()))
    expect(err.code).to.equal('bad_request')
    expect(err.message).to.include('bad temperature')

    answer(400, { error: { message: 'bad stop', type: 'invalid_request_error', param: 'stop' } })
    err = await failure(b.generate(request()))
    expect(err).to.deep.include({ code: 'bad_request', param: 'stop' })

    answer(404, { error: { message: 'The model `up-model` does not exist.' } })
    expect((await failure(b.generate(request()))).code).to.equal('model_unknown')

    answer(429, { error: 'too many requests' }, { 'retry-after': '2' })
    err = await failure(b.generate(request()))
    expect(err).to.deep.include({ code: 'overloaded', retryAfterMs: 2000 })

    answer(500, { error: { message: 'CUDA out of memory' } })
    err = await failure(b.generate(request()))
    expect(err.code).to.equal('worker_failed')
    expect(err.message).to.include('CUDA out of memory')

    expect(b.status()).to.deep.include({ failed: 6, running: 0 })
  })

  it('fails with worker_failed on a malformed or truncated event stream', async () => {
    const b = make()
    upstream.handler = (_req, res) => { sse(res, [chatStream(true)[0], '{"choices": [nope']) }
    let err = await failure(b.generate(request()))
    expect(err.code).to.equal('worker_failed')
    expect(err.message).to.match(/malformed/)

    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.end('this is not an event stream\n\n')
    }
    err = await failure(b.generate(request()))
    expect(err.code).to.equal('worker_failed')

    // cut off before any finish_reason or [DONE]
    upstream.handler = (_req, res) => { sse(res, chatStream(true).slice(0, 3)) }
    err = await failure(b.generate(request()))
    expect(err.code).to.equal('worker_failed')

    upstream.handler = (_req, res) => { sse(res, [{ error: { message: 'engine died', code: 500 } }]) }
    err = await failure(b.generate(request()))
    expect(err.code).to.equal('worker_failed')
    expect(err.message).to.include('engine died')
  })

  it('aborts the upstream request within 100 ms of a cancel', async () => {
    let closedAt = 0
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`data: ${JSON.stringify(chatStream(true)[2])}\n\n`)
      // then nothing more: a long generation in progress
      res.on('close', () => { closedAt = performance.now() })
    }
    const b = make()
    const controller = new AbortController()
    let abortedAt = 0
    const seen: BackendEvent[] = []
    const err = await (async () => {
      for await (const e of b.generate(request('chat', { signal: controller.signal }))) {
        seen.push(e)
        setTimeout(() => { abortedAt = performance.now(); controller.abort() }, 20)
      }
    })().then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(InferenceError)
    expect((err as InferenceError).code).to.equal('cancelled')
    expect(performance.now() - abortedAt).to.be.lessThan(100)
    await waitFor(() => closedAt > 0, 1000, 'the upstream to see the request closed', 5)
    expect(closedAt - abortedAt).to.be.lessThan(100)
    expect(seen).to.have.length(1)
    expect(b.status()).to.deep.include({ running: 0, cancelled: 1, tokens: 1 })
  })

  it('closes the upstream request when the consumer stops iterating early', async () => {
    let closed = false
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`data: ${JSON.stringify(chatStream(true)[2])}\n\n`)
      res.on('close', () => { closed = true })
    }
    const b = make()
    for await (const e of b.generate(request())) { if (e.type === 'chunk') break }
    await waitFor(() => closed, 1000, 'the upstream request to close', 5)
    expect(b.status()).to.deep.include({ running: 0, cancelled: 1 })
  })

  it('ends in-flight jobs with unavailable on stop', async () => {
    upstream.handler = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      res.write(`data: ${JSON.stringify(chatStream(true)[2])}\n\n`)
    }
    const b = make()
    await b.start()
    const job = collect(b.generate(request())).then(() => undefined, (e: unknown) => e)
    await waitFor(() => upstream.posts().length === 1, 1000, 'the job to reach the upstream', 5)
    await b.stop()
    expect(((await job) as InferenceError).code).to.equal('unavailable')
    expect((await failure(b.generate(request()))).code).to.equal('unavailable')
  })

  it('flips availability when the upstream goes down and comes back, with events', async () => {
    const b = make()
    const flips: boolean[] = []
    b.addEventListener('availability', () => { flips.push(b.status().available) })
    await b.start()
    expect(b.status().available).to.equal(true)
    expect(flips).to.deep.equal([true])

    await upstream.close()
    await waitFor(() => !b.status().available, 2000, 'the backend to notice the upstream is down')
    expect(b.status().detail).to.equal(`upstream ${upstream.url} unreachable: ECONNREFUSED`)
    expect(flips).to.deep.equal([true, false])

    await upstream.listen(upstream.port)
    await waitFor(() => b.status().available, 2000, 'the backend to notice the upstream is back')
    expect(flips).to.deep.equal([true, false, true])
    expect(logs.some(l => l.includes('unreachable: ECONNREFUSED'))).to.equal(true)
    expect(logs.some(l => l.includes('is up'))).to.equal(true)
  })

  it('starts unavailable against a dead upstream, answers unavailable, and comes up when it appears', async () => {
    const port = await freePort()
    const b = make({ url: `http://127.0.0.1:${port}/v1` })
    await b.start()
    expect(b.status()).to.deep.include({ available: false, detail: `upstream http://127.0.0.1:${port}/v1 unreachable: ECONNREFUSED` })
    const err = await failure(b.generate(request()))
    expect(err.code).to.equal('unavailable')
    expect(err.message).to.include('ECONNREFUSED')
    expect(b.status()).to.deep.include({ failed: 1, running: 0 })

    await upstream.close()
    await upstream.listen(port)
    await waitFor(() => b.status().available, 2000, 'the backend to find the upstream')
  })

  it('marks the upstream down at once when a job finds it refusing connections', async () => {
    const b = make({ healthIntervalMs: 60_000 })
    await b.start()
    let flipped = 0
    b.addEventListener('availability', () => { flipped++ })
    await upstream.close()
    expect((await failure(b.generate(request()))).code).to.equal('unavailable')
    expect(b.status().available).to.equal(false)
    expect(flipped).to.equal(1)
  })

  it('gives up with unavailable when the upstream sends no headers within requestTimeoutMs', async () => {
    upstream.handler = () => {} // accepts the request, never answers
    const b = make({ requestTimeoutMs: 100 })
    const started = performance.now()
    const err = await failure(b.generate(request()))
    expect(err.code).to.equal('unavailable')
    expect(err.message).to.match(/no response within 100 ms/)
    expect(performance.now() - started).to.be.within(90, 1000)
  })

  it('refuses a model it does not serve without asking the upstream', async () => {
    const b = make()
    expect((await failure(b.generate({ ...request(), model: 'other' }))).code).to.equal('model_unknown')
    expect(upstream.posts()).to.have.length(0)
  })

  it('reports a probe refused for the API key, and warns about an unlisted model', async () => {
    upstream.probeHandler = (_req, res) => { res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `bad key ${KEY}` })) }
    const b = make()
    await b.start()
    expect(b.status()).to.deep.include({ available: false })
    expect(b.status().detail).to.match(/refused the API key \(HTTP 401\)/)
    await b.stop()

    upstream.probeHandler = (_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ data: [{ id: 'something-else' }] })) }
    const c = make()
    await c.start()
    expect(c.status().available).to.equal(true)
    expect(logs.filter(l => l.includes('does not list model up-model'))).to.have.length(1)
  })
})

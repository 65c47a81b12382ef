import { request as httpRequest } from 'node:http'
import { expect } from 'chai'
import OpenAI, { APIError, BadRequestError, InternalServerError, NotFoundError, RateLimitError } from 'openai'
import { parseChatRequest, parseCompletionRequest } from '../../src/inference/openai-request.js'
import { InferenceError } from '../../src/inference/types.js'
import { startApiServer } from '../../src/roles/client/http-api.js'
import type { ChatChoiceDelta, CompletionChoiceDelta, FinishReason, InferenceErrorCode } from '../../src/inference/types.js'
import type { ApiEvent, ApiJob, ApiModel, CompletionService } from '../../src/roles/client/api-types.js'
import type { ApiServer } from '../../src/roles/client/http-api.js'

const PIECES = ['Hello', ', ', 'world', '!']
const TEXT = PIECES.join('')
const COCOON = { worker: '12D3KooWfake', costNanoton: '1234' }

interface Plan {
  /** Thrown before the first event. */
  failBefore?: InferenceError
  /** Thrown after this many chunks. */
  failAfter?: { chunks: number, error: InferenceError }
  /** After the chunks, wait for the signal instead of finishing. */
  hang?: boolean
  /** Put the finish reason on the last chunk too (otherwise only in 'done'). */
  finishInChunk?: boolean
  reasoning?: string
}

/** A deterministic service: fixed pieces, failures on demand, and a record of jobs and aborts. */
class FakeService implements CompletionService {
  plan: Plan = {}
  readonly jobs: ApiJob[] = []
  readonly aborted = new Map<string, number>()
  modelList: ApiModel[] = [
    { id: 'tiny-chat', created: 1_700_000_000, workers: 2, contextLength: 4096, pricePromptPerM: { min: '100', max: '200' }, priceCompletionPerM: { min: '300', max: '400' }, synthetic: true, description: 'a synthetic test model' },
    { id: 'org/slashed-model', created: 1_700_000_001, workers: 1, contextLength: 8192, pricePromptPerM: { min: '1', max: '1' }, priceCompletionPerM: { min: '2', max: '2' }, synthetic: false, description: 'a name with a slash' }
  ]

  async models (): Promise<ApiModel[]> {
    return this.modelList
  }

  async * run (job: ApiJob, signal: AbortSignal): AsyncIterable<ApiEvent> {
    this.jobs.push(job)
    signal.addEventListener('abort', () => { this.aborted.set(job.requestId, performance.now()) }, { once: true })
    const plan = this.plan
    if (plan.failBefore !== undefined) throw plan.failBefore
    if (plan.reasoning !== undefined) {
      yield { type: 'chunk', chunk: { choices: [{ index: 0, delta: { role: 'assistant', reasoning_content: plan.reasoning }, finish_reason: null }] } }
    }
    for (const [i, piece] of PIECES.entries()) {
      if (plan.failAfter?.chunks === i) throw plan.failAfter.error
      const finish: FinishReason | null = plan.finishInChunk === true && i === PIECES.length - 1 ? 'stop' : null
      const choice: ChatChoiceDelta | CompletionChoiceDelta = job.kind === 'chat'
        ? { index: 0, delta: { ...(i === 0 ? { role: 'assistant' as const } : {}), content: piece }, finish_reason: finish }
        : { index: 0, text: piece, finish_reason: finish }
      yield { type: 'chunk', chunk: { choices: [choice] } }
    }
    if (plan.hang === true) {
      await new Promise(resolve => { signal.addEventListener('abort', resolve, { once: true }) })
      throw new InferenceError('cancelled', 'cancelled by the requester')
    }
    yield { type: 'done', usage: { promptTokens: 7, cachedTokens: 2, completionTokens: PIECES.length, reasoningTokens: 0 }, finishReason: 'stop', cocoon: COCOON }
  }
}

async function postJson (url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init })
}

interface ErrorJson { error: { message: string, type: string, param: string | null, code: string } }

async function expectError (res: Response, status: number, code: string, param?: string | null): Promise<ErrorJson['error']> {
  const json = await res.json() as ErrorJson
  expect(res.status, JSON.stringify(json)).to.equal(status)
  expect(res.headers.get('content-type')).to.match(/^application\/json/)
  expect(json.error.code).to.equal(code)
  expect(json.error.type).to.equal(status >= 500 ? 'server_error' : 'invalid_request_error')
  if (param !== undefined) expect(json.error.param).to.equal(param)
  return json.error
}

async function waitUntil (predicate: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!predicate()) {
    if (performance.now() > deadline) throw new Error('condition not met in time')
    await new Promise(resolve => setTimeout(resolve, 2))
  }
}

const CHAT = { model: 'tiny-chat', messages: [{ role: 'user', content: 'Say hello' }] }

describe('OpenAI-compatible HTTP API', () => {
  let service: FakeService
  let server: ApiServer
  let client: OpenAI

  beforeEach(async () => {
    service = new FakeService()
    server = await startApiServer({ host: '127.0.0.1', port: 0, service })
    client = new OpenAI({ baseURL: server.url + '/v1', apiKey: 'unused', maxRetries: 0 })
  })
  afterEach(async () => { await server.close() })

  describe('through the official SDK', () => {
    it('answers a chat completion in one piece, with usage and the cocoon field', async () => {
      service.plan = { reasoning: 'thinking...' }
      const answer = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'Say hello' }], temperature: 0.5, max_tokens: 32 })
      expect(answer.object).to.equal('chat.completion')
      expect(answer.id).to.match(/^chatcmpl-[0-9a-f]{32}$/)
      expect(answer.model).to.equal('tiny-chat')
      expect(answer.choices).to.have.length(1)
      expect(answer.choices[0].message).to.deep.equal({ role: 'assistant', content: TEXT, reasoning_content: 'thinking...' })
      expect(answer.choices[0].finish_reason).to.equal('stop')
      expect(answer.usage).to.deep.include({ prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 })
      expect(answer.usage?.prompt_tokens_details?.cached_tokens).to.equal(2)
      expect((answer as unknown as { cocoon: unknown }).cocoon).to.deep.equal(COCOON)

      const job = service.jobs[0]
      expect(answer.id).to.equal(`chatcmpl-${job.requestId}`)
      expect(job).to.deep.include({ kind: 'chat', model: 'tiny-chat', maxTokens: 32 })
      expect(job.body).to.deep.equal({ model: 'tiny-chat', messages: [{ role: 'user', content: 'Say hello' }], temperature: 0.5, max_tokens: 32 })
    })

    it('streams a chat completion; usage arrives last only when asked for', async () => {
      const stream = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'hi' }], stream: true })
      let text = ''
      const finishReasons: unknown[] = []
      for await (const chunk of stream) {
        expect(chunk.object).to.equal('chat.completion.chunk')
        expect(chunk.usage ?? null).to.equal(null)
        text += chunk.choices[0]?.delta.content ?? ''
        finishReasons.push(chunk.choices[0]?.finish_reason)
      }
      expect(text).to.equal(TEXT)
      // The service gave the finish reason only in 'done': the server adds a last chunk for it.
      expect(finishReasons.at(-1)).to.equal('stop')
      expect(service.jobs[0].body).to.not.have.property('stream')

      service.plan = { finishInChunk: true }
      const withUsage = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } })
      const chunks = []
      for await (const chunk of withUsage) chunks.push(chunk)
      expect(chunks.map(c => c.choices[0]?.delta.content ?? '').join('')).to.equal(TEXT)
      expect(chunks.filter(c => c.choices[0]?.finish_reason === 'stop')).to.have.length(1)
      const last = chunks.at(-1)
      expect(last?.choices).to.deep.equal([])
      expect(last?.usage).to.deep.include({ prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 })
      expect((last as unknown as { cocoon: unknown }).cocoon).to.deep.equal(COCOON)
      expect(chunks.slice(0, -1).every(c => c.usage === null)).to.equal(true)
      expect(service.jobs[1].body).to.not.have.property('stream_options')
    })

    it('answers text completions, streamed and not', async () => {
      const answer = await client.completions.create({ model: 'tiny-chat', prompt: 'Once upon', max_tokens: 8 })
      expect(answer.object).to.equal('text_completion')
      expect(answer.id).to.match(/^cmpl-/)
      expect(answer.choices).to.deep.equal([{ index: 0, text: TEXT, finish_reason: 'stop', logprobs: null }])
      expect(answer.usage?.total_tokens).to.equal(11)
      expect(service.jobs[0]).to.deep.include({ kind: 'completion', maxTokens: 8 })

      const stream = await client.completions.create({ model: 'tiny-chat', prompt: 'Once upon', stream: true, stream_options: { include_usage: true } })
      let text = ''
      let usage: unknown = null
      for await (const chunk of stream) {
        expect(chunk.object).to.equal('text_completion')
        text += chunk.choices[0]?.text ?? ''
        usage = chunk.usage ?? usage
      }
      expect(text).to.equal(TEXT)
      expect(usage).to.deep.include({ completion_tokens: 4 })
      expect(service.jobs[1].maxTokens).to.equal(null)
    })

    it('lists models with their network details, and retrieves one', async () => {
      const models = []
      for await (const model of client.models.list()) models.push(model)
      expect(models.map(m => m.id)).to.deep.equal(['tiny-chat', 'org/slashed-model'])
      expect(models[0]).to.deep.equal({
        id: 'tiny-chat',
        object: 'model',
        created: 1_700_000_000,
        owned_by: 'cocoon',
        workers: 2,
        context_length: 4096,
        pricing: { prompt_per_m_nanoton: { min: '100', max: '200' }, completion_per_m_nanoton: { min: '300', max: '400' } },
        synthetic: true,
        description: 'a synthetic test model'
      })
      expect((await client.models.retrieve('org/slashed-model')).id).to.equal('org/slashed-model')
      const err = await client.models.retrieve('absent').catch((e: unknown) => e)
      expect(err).to.be.instanceOf(NotFoundError)
      expect((err as NotFoundError).code).to.equal('model_unknown')
    })

    it('maps each error code to its status and SDK error class', async () => {
      const cases: Array<[InferenceErrorCode, number, new (...args: never[]) => APIError]> = [
        ['bad_request', 400, BadRequestError],
        ['price_too_low', 402, APIError],
        ['model_unknown', 404, NotFoundError],
        ['too_large', 413, APIError],
        ['overloaded', 429, RateLimitError],
        ['worker_failed', 502, InternalServerError],
        ['no_capacity', 503, InternalServerError],
        ['unavailable', 503, InternalServerError],
        ['timeout', 504, InternalServerError]
      ]
      for (const [code, status, errorClass] of cases) {
        service.plan = { failBefore: new InferenceError(code, `failed with ${code}`, { retryAfterMs: code === 'overloaded' ? 1500 : 0 }) }
        for (const stream of [false, true]) {
          const err = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'x' }], stream }).catch((e: unknown) => e)
          expect(err, `${code} stream=${stream}`).to.be.instanceOf(errorClass)
          const apiError = err as APIError
          expect(apiError.status).to.equal(status)
          expect(apiError.code).to.equal(code)
          expect(apiError.message).to.include(`failed with ${code}`)
          expect(apiError.headers?.get('retry-after') ?? null).to.equal(code === 'overloaded' ? '2' : null)
          expect(apiError.requestID).to.match(/^[0-9a-f]{32}$/)
        }
      }
    })

    it('raises a mid-stream failure from the stream iterator, with its message', async () => {
      service.plan = { failAfter: { chunks: 2, error: new InferenceError('worker_failed', 'the worker crashed') } }
      const stream = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'x' }], stream: true })
      let text = ''
      const err = await (async () => {
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? ''
      })().catch((e: unknown) => e)
      expect(text).to.equal('Hello, ')
      expect(err).to.be.instanceOf(APIError)
      expect((err as APIError).message).to.include('the worker crashed')
      expect((err as APIError).code).to.equal('worker_failed')

      // Without streaming the same failure is an HTTP 502.
      const plain = await client.chat.completions.create({ ...CHAT, messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)
      expect(plain).to.be.instanceOf(InternalServerError)
      expect((plain as APIError).status).to.equal(502)
    })
  })

  describe('over raw HTTP', () => {
    it('refuses an unknown field, naming it', async () => {
      const error = await expectError(await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, foo: 1 }), 400, 'bad_request', 'foo')
      expect(error.message).to.equal("unknown field 'foo'")
      await expectError(await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, messages: [{ role: 'user', content: 'x', tool_calls: [] }] }), 400, 'bad_request', 'messages[0].tool_calls')
      expect(service.jobs).to.have.length(0)
    })

    it('refuses a missing model and a bad max_tokens, naming the field', async () => {
      await expectError(await postJson(`${server.url}/v1/chat/completions`, { messages: CHAT.messages }), 400, 'bad_request', 'model')
      for (const maxTokens of [-5, 0, 1.5, '10']) {
        const error = await expectError(await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, max_tokens: maxTokens }), 400, 'bad_request', 'max_tokens')
        expect(error.message).to.match(/^max_tokens: expected a whole number of tokens/)
      }
      await expectError(await postJson(`${server.url}/v1/completions`, { model: 'm', prompt: ['a', 'b'] }), 400, 'bad_request', 'prompt')
    })

    it('refuses invalid JSON, non-objects and other content types', async () => {
      const error = await expectError(await postJson(`${server.url}/v1/chat/completions`, '{"model": "m",'), 400, 'bad_request', null)
      expect(error.message).to.match(/not valid JSON/)
      await expectError(await postJson(`${server.url}/v1/chat/completions`, '[1, 2]'), 400, 'bad_request', null)
      await expectError(await postJson(`${server.url}/v1/chat/completions`, ''), 400, 'bad_request', null)
      const text = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: JSON.stringify(CHAT) })
      expect((await expectError(text, 400, 'bad_request')).message).to.match(/Content-Type must be application\/json/)
    })

    it('answers 413 to a 10 MiB body without buffering it, and stays usable', async () => {
      const huge = JSON.stringify({ ...CHAT, messages: [{ role: 'user', content: 'x'.repeat(10 * 1024 * 1024) }] })
      await expectError(await postJson(`${server.url}/v1/chat/completions`, huge), 413, 'too_large')
      // Chunked, so the size is only known while reading.
      const chunked = new ReadableStream<Uint8Array>({
        start (controller) {
          const block = new TextEncoder().encode('x'.repeat(1024 * 1024))
          for (let i = 0; i < 10; i++) controller.enqueue(block)
          controller.close()
        }
      })
      const res = await fetch(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chunked, duplex: 'half' } as RequestInit)
      await expectError(res, 413, 'too_large')
      const ok = await postJson(`${server.url}/v1/chat/completions`, CHAT)
      expect(ok.status).to.equal(200)
    })

    it('answers 500 without internals when the service fails unexpectedly', async () => {
      service.run = () => { throw new Error('secret: /home/user/.cocoon/wallet.key') }
      const error = await expectError(await postJson(`${server.url}/v1/chat/completions`, CHAT), 500, 'internal_error', null)
      expect(error.message).to.equal('internal server error')
      service.models = async () => { throw new TypeError('secret') }
      expect(JSON.stringify(await expectError(await fetch(`${server.url}/v1/models`), 500, 'internal_error'))).to.not.include('secret')
    })

    it('survives odd bodies', async () => {
      const odd = ['{"__proto__": {"admin": true}, "model": "m", "messages": []}', '{"model": "m", "messages": [{"role": "user", "content": "x", "constructor": 1}]}',
        '[' .repeat(5000) + ']'.repeat(5000), '{"model": "m", "messages": [{"role": "user", "content": [null]}]}', '"just a string"', 'null', '1e999', '\u0000']
      for (const body of odd) {
        const res = await postJson(`${server.url}/v1/chat/completions`, body)
        expect(res.status, body.slice(0, 40)).to.equal(400)
        await res.json()
      }
      const invalidUtf8 = await fetch(`${server.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: new Uint8Array([0x7b, 0xff, 0x7d]) })
      expect((await expectError(invalidUtf8, 400, 'bad_request')).message).to.match(/UTF-8/)
      expect(service.jobs).to.have.length(0)
    })

    it('answers 404 to unknown paths and 405 to wrong methods', async () => {
      await expectError(await fetch(`${server.url}/v1/nope`), 404, 'not_found')
      await expectError(await fetch(`${server.url}/`), 404, 'not_found')
      const wrong = await fetch(`${server.url}/v1/chat/completions`)
      await expectError(wrong, 405, 'method_not_allowed')
      expect(wrong.headers.get('allow')).to.equal('POST')
      await expectError(await postJson(`${server.url}/v1/models`, {}), 405, 'method_not_allowed')
      const health = await fetch(`${server.url}/healthz`)
      expect(await health.json()).to.deep.equal({ status: 'ok', in_flight: 0 })
    })

    it('returns the request id in the x-request-id header', async () => {
      const res = await postJson(`${server.url}/v1/completions`, { model: 'tiny-chat', prompt: 'p' })
      const json = await res.json() as { id: string }
      expect(res.headers.get('x-request-id')).to.match(/^[0-9a-f]{32}$/)
      expect(json.id).to.equal(`cmpl-${res.headers.get('x-request-id') ?? ''}`)
    })

    it('sends well-formed server-sent events ending in [DONE]', async () => {
      const res = await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, stream: true })
      expect(res.headers.get('content-type')).to.match(/^text\/event-stream/)
      expect(res.headers.get('cache-control')).to.equal('no-cache')
      expect(res.headers.get('x-accel-buffering')).to.equal('no')
      const events = (await res.text()).split('\n\n')
      expect(events.pop()).to.equal('')
      expect(events.pop()).to.equal('data: [DONE]')
      expect(events.every(e => e.startsWith('data: {'))).to.equal(true)
      const first = JSON.parse(events[0].slice(6)) as Record<string, unknown>
      expect(first).to.deep.include({ object: 'chat.completion.chunk', model: 'tiny-chat', id: `chatcmpl-${service.jobs[0].requestId}` })
    })

    it('aborts the service within 100 ms when a streaming client goes away', async () => {
      service.plan = { hang: true }
      const controller = new AbortController()
      const res = await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, stream: true }, { signal: controller.signal })
      const reader = res.body?.getReader()
      const first = await reader?.read()
      expect(new TextDecoder().decode(first?.value)).to.match(/^data: /)
      expect(server.inFlight).to.equal(1)
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(service.aborted.size, 'aborted before the client left').to.equal(0)
      const abortedAt = performance.now()
      controller.abort()
      await waitUntil(() => service.aborted.size === 1, 100)
      expect([...service.aborted.values()][0] - abortedAt).to.be.below(100)
      await waitUntil(() => server.inFlight === 0, 1000)
    })

    it('aborts the service when a non-streaming client goes away', async () => {
      service.plan = { hang: true }
      const controller = new AbortController()
      const pending = postJson(`${server.url}/v1/chat/completions`, CHAT, { signal: controller.signal }).catch((e: unknown) => e)
      await waitUntil(() => service.jobs.length === 1, 1000)
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(service.aborted.size, 'aborted before the client left').to.equal(0)
      controller.abort()
      await waitUntil(() => service.aborted.size === 1, 100)
      expect(await pending).to.be.instanceOf(Error)
    })

    it('does not abort jobs whose response completed normally', async () => {
      await (await postJson(`${server.url}/v1/chat/completions`, CHAT)).json()
      await (await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, stream: true })).text()
      await new Promise(resolve => setTimeout(resolve, 20))
      expect(service.jobs).to.have.length(2)
      expect(service.aborted.size).to.equal(0)
    })

    it('refuses Host names that are not loopback (DNS rebinding)', async () => {
      const status = await new Promise<number>((resolve, reject) => {
        const req = httpRequest(`${server.url}/v1/models`, { headers: { host: 'evil.example:80' } }, res => {
          res.resume()
          resolve(res.statusCode ?? 0)
        })
        req.on('error', reject)
        req.end()
      })
      expect(status).to.equal(403)
    })

    it('close() aborts running jobs and resolves promptly', async () => {
      service.plan = { hang: true }
      const res = await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, stream: true })
      const body = res.text()
      await waitUntil(() => service.jobs.length === 1, 1000)
      const started = performance.now()
      await server.close()
      expect(performance.now() - started).to.be.below(1000)
      expect(service.aborted.size).to.equal(1)
      // The stream ends with an error event saying why.
      expect(await body).to.match(/data: {"error":{"message":"the API server is shutting down","type":"server_error","param":null,"code":"unavailable"}}\n\n$/)
      const closed = await fetch(`${server.url}/healthz`).catch((e: unknown) => e)
      expect(closed).to.be.instanceOf(Error)
    })

    it('times out a request whose body never completes, but not a long response', async () => {
      await server.close()
      server = await startApiServer({ host: '127.0.0.1', port: 0, service, requestTimeoutMs: 300 })
      const outcome = await new Promise<string>(resolve => {
        const req = httpRequest(`${server.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': '1000' } }, res => {
          res.resume()
          resolve(String(res.statusCode))
        })
        req.on('error', err => { resolve(err.message) })
        req.write('{"model":')
      })
      expect(outcome).to.equal('408')

      service.plan = { hang: true }
      const controller = new AbortController()
      const res = await postJson(`${server.url}/v1/chat/completions`, { ...CHAT, stream: true }, { signal: controller.signal })
      const reader = res.body?.getReader()
      await reader?.read()
      await new Promise(resolve => setTimeout(resolve, 800))
      expect(service.aborted.size).to.equal(0)
      controller.abort()
      await waitUntil(() => service.aborted.size === 1, 100)
    })
  })
})

describe('OpenAI request validation', () => {
  function badParam (fn: () => unknown): { param: string | null, message: string } {
    try {
      fn()
    } catch (err) {
      expect(err).to.be.instanceOf(InferenceError)
      expect((err as InferenceError).code).to.equal('bad_request')
      return { param: (err as InferenceError).param, message: (err as InferenceError).message }
    }
    throw new Error('expected a bad_request error')
  }
  const chat = (extra: Record<string, unknown>): unknown => ({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...extra })

  it('accepts every allowlisted chat field and strips the streaming ones', () => {
    const parsed = parseChatRequest(chat({
      messages: [{ role: 'system', content: 's' }, { role: 'developer', content: [{ type: 'text', text: 'd' }] }, { role: 'user', content: 'u', name: 'ann' }, { role: 'assistant', content: 'a' }],
      max_tokens: 100,
      max_completion_tokens: 50,
      temperature: 2,
      top_p: 0,
      n: 1,
      stream: true,
      stream_options: { include_usage: true },
      stop: ['a', 'b', 'c', 'd'],
      seed: -3,
      presence_penalty: -2,
      frequency_penalty: 2,
      user: 'u1',
      logit_bias: {},
      response_format: { type: 'text' }
    }))
    expect(parsed).to.deep.include({ kind: 'chat', model: 'm', maxTokens: 50, stream: true, includeUsage: true, n: 1 })
    expect(Object.keys(parsed.body).sort()).to.deep.equal(['frequency_penalty', 'max_completion_tokens', 'max_tokens', 'messages', 'model', 'n', 'presence_penalty', 'response_format', 'seed', 'stop', 'temperature', 'top_p', 'user'])
  })

  it('treats null as absent', () => {
    const parsed = parseChatRequest(chat({ temperature: null, stop: null, stream: null, max_tokens: null }))
    expect(parsed.body).to.deep.equal({ model: 'm', messages: [{ role: 'user', content: 'x' }] })
    expect(parsed).to.deep.include({ maxTokens: null, stream: false, includeUsage: false })
  })

  it('names the field of each refused chat value', () => {
    expect(badParam(() => parseChatRequest('hello')).param).to.equal(null)
    expect(badParam(() => parseChatRequest(chat({ model: '' }))).param).to.equal('model')
    expect(badParam(() => parseChatRequest(chat({ messages: [] }))).param).to.equal('messages')
    expect(badParam(() => parseChatRequest(chat({ messages: [{ role: 'tool', content: 'x' }] }))).param).to.equal('messages[0].role')
    expect(badParam(() => parseChatRequest(chat({ messages: [{ role: 'user' }] }))).param).to.equal('messages[0].content')
    expect(badParam(() => parseChatRequest(chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }))).param).to.equal('messages[0].content[0].image_url')
    expect(badParam(() => parseChatRequest(chat({ messages: [{ role: 'user', content: [{ type: 'image_url' }] }] }))).param).to.equal('messages[0].content[0].type')
    expect(badParam(() => parseChatRequest(chat({ max_completion_tokens: 1_000_001 }))).param).to.equal('max_completion_tokens')
    expect(badParam(() => parseChatRequest(chat({ temperature: 2.5 }))).message).to.equal('temperature: expected a number from 0 to 2 (got 2.5)')
    expect(badParam(() => parseChatRequest(chat({ top_p: -0.1 }))).param).to.equal('top_p')
    expect(badParam(() => parseChatRequest(chat({ n: 2 }))).message).to.match(/^n: only n=1 is supported/)
    expect(badParam(() => parseChatRequest(chat({ stream: 'yes' }))).param).to.equal('stream')
    expect(badParam(() => parseChatRequest(chat({ stream: true, stream_options: { include_usage: true, extra: 1 } }))).param).to.equal('stream_options.extra')
    expect(badParam(() => parseChatRequest(chat({ stream_options: { include_usage: true } }))).param).to.equal('stream_options')
    expect(badParam(() => parseChatRequest(chat({ stop: ['a', 'b', 'c', 'd', 'e'] }))).param).to.equal('stop')
    expect(badParam(() => parseChatRequest(chat({ stop: ['a', 3] }))).param).to.equal('stop[1]')
    expect(badParam(() => parseChatRequest(chat({ seed: 1.5 }))).param).to.equal('seed')
    expect(badParam(() => parseChatRequest(chat({ presence_penalty: 3 }))).param).to.equal('presence_penalty')
    expect(badParam(() => parseChatRequest(chat({ frequency_penalty: -3 }))).param).to.equal('frequency_penalty')
    expect(badParam(() => parseChatRequest(chat({ user: 5 }))).param).to.equal('user')
    expect(badParam(() => parseChatRequest(chat({ logit_bias: { 50256: -100 } }))).message).to.equal('logit_bias: logit_bias is not supported')
    expect(badParam(() => parseChatRequest(chat({ response_format: { type: 'json_object' } }))).param).to.equal('response_format.type')
    expect(badParam(() => parseChatRequest(chat({ tools: [] }))).message).to.equal("unknown field 'tools'")
    expect(badParam(() => parseChatRequest(chat({ prompt: 'x' }))).param).to.equal('prompt')
  })

  it('validates completions: single string prompt, no echo or suffix', () => {
    const parsed = parseCompletionRequest({ model: 'm', prompt: 'p', max_tokens: 5, echo: false, suffix: '', stop: 'x' })
    expect(parsed).to.deep.include({ kind: 'completion', maxTokens: 5, stream: false })
    expect(parsed.body).to.deep.equal({ model: 'm', prompt: 'p', max_tokens: 5, stop: 'x' })
    expect(badParam(() => parseCompletionRequest({ model: 'm' })).param).to.equal('prompt')
    expect(badParam(() => parseCompletionRequest({ model: 'm', prompt: ['a'] })).message).to.equal('prompt: only a single string prompt is supported')
    expect(badParam(() => parseCompletionRequest({ model: 'm', prompt: 'p', echo: true })).message).to.match(/^echo: echo is not supported/)
    expect(badParam(() => parseCompletionRequest({ model: 'm', prompt: 'p', suffix: 'end' })).param).to.equal('suffix')
    expect(badParam(() => parseCompletionRequest({ model: 'm', prompt: 'p', messages: [] })).param).to.equal('messages')
    expect(badParam(() => parseCompletionRequest({ model: 'm', prompt: 'p', max_completion_tokens: 5 })).param).to.equal('max_completion_tokens')
  })
})

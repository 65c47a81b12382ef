import { expect } from 'chai'
import { InferenceError } from '../../src/inference/types.js'
import { collect, failure } from './backend-events.js'
import { SyntheticBackend, promptTokenEstimate } from '../../src/roles/worker/backends/synthetic.js'
import type { BackendEvent, ChatChoiceDelta, CompletionChoiceDelta, InferenceRequest } from '../../src/inference/types.js'
import type { SyntheticBackendInit } from '../../src/roles/worker/backends/synthetic.js'

const MODEL = 'synthetic-1'

function backend (options: Partial<SyntheticBackendInit> = {}): SyntheticBackend {
  return new SyntheticBackend({ models: [{ name: MODEL, contextLength: 4096 }], ...options })
}

function chat (content: string, extra: Partial<InferenceRequest> = {}, seed?: number): InferenceRequest {
  return {
    kind: 'chat',
    model: MODEL,
    body: { messages: [{ role: 'user', content }], ...(seed === undefined ? {} : { seed }) },
    maxTokens: 1000,
    signal: new AbortController().signal,
    ...extra
  }
}


const chunksOf = (events: BackendEvent[]): Array<ChatChoiceDelta | CompletionChoiceDelta> =>
  events.flatMap(e => e.type === 'chunk' ? e.chunk.choices : [])
const contentOf = (c: ChatChoiceDelta | CompletionChoiceDelta): string => 'text' in c ? c.text : c.delta.content ?? ''

describe('synthetic backend', () => {
  it('streams the configured number of chunks of exact size, then a finish chunk and usage', async () => {
    const b = backend({ chunks: 7, chunkBytes: 33 })
    await b.start()
    const events = await collect(b.generate(chat('hello there, how are you?')))
    const choices = chunksOf(events)
    expect(choices).to.have.length(8)
    for (const c of choices.slice(0, 7)) {
      const text = contentOf(c)
      expect(Buffer.byteLength(text)).to.equal(33)
      expect(text).to.match(/^[\x20-\x7e]+$/)
      expect(c.finish_reason).to.equal(null)
    }
    expect((choices[0] as ChatChoiceDelta).delta.role).to.equal('assistant')
    expect((choices[1] as ChatChoiceDelta).delta.role).to.equal(undefined)
    expect(choices[7]).to.deep.equal({ index: 0, delta: { content: '' }, finish_reason: 'stop' })
    expect(choices.slice(0, 7).map(contentOf).join('')).to.match(/^[a-z]+( [a-z]+)* ?[a-z]*$/)
    const done = events.at(-1)
    // 'hello there, how are you?' is 25 bytes → ceil(25/4) = 7
    expect(done).to.deep.equal({ type: 'done', usage: { promptTokens: 7, cachedTokens: 0, completionTokens: 7, reasoningTokens: 0 }, finishReason: 'stop' })
    expect(b.status()).to.deep.include({ available: true, running: 0, completed: 1, failed: 0, cancelled: 0, tokens: 7 })
    await b.stop()
  })

  it('gives the same chunks for the same request and different ones for another prompt or seed', async () => {
    const b = backend({ chunks: 5, chunkBytes: 64 })
    const text = async (r: InferenceRequest): Promise<string> => chunksOf(await collect(b.generate(r))).map(contentOf).join('')
    const a1 = await text(chat('same', {}, 1))
    expect(await text(chat('same', {}, 1))).to.equal(a1)
    expect(await text(chat('same', {}, 2))).to.not.equal(a1)
    expect(await text(chat('other', {}, 1))).to.not.equal(a1)
    expect(await text(chat('same', { maxTokens: 2 }, 1))).to.equal(a1.slice(0, 128), 'a cap truncates the same text')
  })

  it('streams completions as text choices', async () => {
    const b = backend({ chunks: 3, chunkBytes: 10 })
    const events = await collect(b.generate({ kind: 'completion', model: MODEL, body: { prompt: 'abcdefgh' }, maxTokens: 100, signal: new AbortController().signal }))
    const choices = chunksOf(events) as CompletionChoiceDelta[]
    expect(choices.map(c => c.text.length)).to.deep.equal([10, 10, 10, 0])
    expect(choices.every(c => !('delta' in c))).to.equal(true)
    expect(choices[3]).to.deep.equal({ index: 0, text: '', finish_reason: 'stop' })
    expect(events.at(-1)).to.deep.include({ type: 'done', usage: { promptTokens: 2, cachedTokens: 0, completionTokens: 3, reasoningTokens: 0 } })
  })

  it('caps the chunks at maxTokens and finishes with length', async () => {
    const b = backend({ chunks: 10 })
    const events = await collect(b.generate(chat('x', { maxTokens: 4 })))
    expect(chunksOf(events)).to.have.length(5)
    expect(chunksOf(events)[4].finish_reason).to.equal('length')
    expect(events.at(-1)).to.deep.include({ finishReason: 'length' })
    expect((events.at(-1) as { usage: { completionTokens: number } }).usage.completionTokens).to.equal(4)

    const exact = await collect(b.generate(chat('x', { maxTokens: 10 })))
    expect(exact.at(-1)).to.deep.include({ finishReason: 'stop' })
  })

  it('estimates prompt tokens from the text of messages and prompts, at least 1', () => {
    expect(promptTokenEstimate({ kind: 'chat', body: { messages: [{ role: 'user', content: 'abcd' }, { role: 'user', content: [{ type: 'text', text: 'efgh1' }] }] } })).to.equal(3)
    expect(promptTokenEstimate({ kind: 'completion', body: { prompt: '' } })).to.equal(1)
    expect(promptTokenEstimate({ kind: 'completion', body: { prompt: [1, 2, 3] } })).to.equal(3)
  })

  it('paces chunks by intervalMs after firstChunkDelayMs', async () => {
    const b = backend({ chunks: 5, intervalMs: 40, firstChunkDelayMs: 60 })
    const start = performance.now()
    const at: number[] = []
    for await (const e of b.generate(chat('pace'))) {
      if (e.type === 'chunk') at.push(performance.now() - start)
    }
    // paced from the job's start: 60 ms of prefill, then 4 gaps of 40 ms
    expect(at[0]).to.be.within(55, 300)
    expect(at[4]).to.be.within(215, 600)
  })

  it('stops within 50 ms of an abort, even mid-pause, counting the job as cancelled', async () => {
    const b = backend({ chunks: 100, intervalMs: 1000 })
    const controller = new AbortController()
    const seen: BackendEvent[] = []
    const job = (async () => { for await (const e of b.generate(chat('cancel me', { signal: controller.signal }))) seen.push(e) })()
    await new Promise(resolve => setTimeout(resolve, 30))
    expect(b.status().running).to.equal(1)
    const abortedAt = performance.now()
    controller.abort()
    const err = await job.then(() => undefined, (e: unknown) => e)
    expect(performance.now() - abortedAt).to.be.lessThan(50)
    expect(err).to.be.instanceOf(InferenceError)
    expect((err as InferenceError).code).to.equal('cancelled')
    expect(seen).to.have.length(1)
    expect(b.status()).to.deep.include({ running: 0, completed: 0, cancelled: 1, tokens: 1 })
  })

  it('refuses a job whose signal is already aborted, and counts an abandoned iteration as cancelled', async () => {
    const b = backend({ chunks: 10 })
    const controller = new AbortController()
    controller.abort()
    expect((await failure(b.generate(chat('x', { signal: controller.signal })))).code).to.equal('cancelled')
    for await (const e of b.generate(chat('y'))) { if (e.type === 'chunk') break }
    expect(b.status()).to.deep.include({ running: 0, cancelled: 1, tokens: 1 })
  })

  it('refuses an unknown model', async () => {
    const err = await failure(backend().generate({ ...chat('x'), model: 'nope' }))
    expect(err.code).to.equal('model_unknown')
    expect(err.httpStatus).to.equal(404)
  })

  it('fails with worker_failed after failAfterChunks chunks', async () => {
    const b = backend({ chunks: 10, failAfterChunks: 3 })
    const seen: BackendEvent[] = []
    const err = await (async () => { for await (const e of b.generate(chat('x'))) seen.push(e) })().then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(InferenceError)
    expect((err as InferenceError).code).to.equal('worker_failed')
    expect(seen).to.have.length(3)
    expect(b.status()).to.deep.include({ failed: 1, completed: 0, tokens: 3 })

    b.configure({ failAfterChunks: undefined })
    expect((await collect(b.generate(chat('x')))).at(-1)?.type).to.equal('done')
  })

  it('answers overloaded beyond maxConcurrent running jobs', async () => {
    const b = backend({ chunks: 100, intervalMs: 20, maxConcurrent: 2 })
    const controller = new AbortController()
    const running = [1, 2].map(async () => collect(b.generate(chat('x', { signal: controller.signal }))).catch((e: unknown) => e))
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(b.status().running).to.equal(2)
    const err = await failure(b.generate(chat('x')))
    expect(err.code).to.equal('overloaded')
    controller.abort()
    await Promise.all(running)
    expect(b.status()).to.deep.include({ running: 0, cancelled: 2, failed: 0 })
    expect((await collect(b.generate(chat('x', { maxTokens: 1 })))).at(-1)?.type).to.equal('done')
  })

  it('announces its models as synthetic and flips availability on request', async () => {
    const b = backend()
    expect(b.models()).to.have.length(1)
    expect(b.models()[0]).to.deep.include({ name: MODEL, contextLength: 4096, synthetic: true })
    expect(b.models()[0].description).to.match(/synthetic fixed-output test backend/)
    let flips = 0
    const listener = (): void => { flips++ }
    b.addEventListener('availability', listener)
    b.setAvailable(false, 'test says down')
    expect(b.status()).to.deep.include({ available: false, detail: 'test says down' })
    expect((await failure(b.generate(chat('x')))).code).to.equal('unavailable')
    b.setAvailable(true)
    b.removeEventListener('availability', listener)
    b.setAvailable(false)
    expect(flips).to.equal(2)
  })

  it('ends running jobs with unavailable on stop', async () => {
    const b = backend({ chunks: 100, intervalMs: 500 })
    await b.start()
    const job = collect(b.generate(chat('x'))).then(() => undefined, (e: unknown) => e)
    await new Promise(resolve => setTimeout(resolve, 20))
    await b.stop()
    const err = await job
    expect((err as InferenceError).code).to.equal('unavailable')
    expect(b.status()).to.deep.include({ running: 0, failed: 1 })
  })
})

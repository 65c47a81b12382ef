/**
 * The embedded llama.cpp backend on real node-llama-cpp with the synthetic
 * random-weight model: streaming shape, usage counted by the tokenizer,
 * seeded determinism, stop sequences, cancellation within 100 ms, the
 * per-model queue and the errors bad input turns into. One backend is
 * started for the whole file; prompt token counts are checked against a
 * separate vocabulary-only load of the same file.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import type { Llama, LlamaModel } from 'node-llama-cpp'
import { LlamaBackend } from '../../src/roles/worker/backends/llama.js'
import { StopScanner } from '../../src/roles/worker/backends/llama-request.js'
import {
  type BackendEvent,
  type ChatChoiceDelta,
  type CompletionChoiceDelta,
  InferenceError,
  type InferenceKind,
  type Usage
} from '../../src/inference/types.js'

const MODEL = 'cocoon-synthetic'
const CONTEXT = 512

interface Run {
  events: BackendEvent[]
  choices: Array<ChatChoiceDelta | CompletionChoiceDelta>
  text: string
  usage: Usage
  finishReason: string
}

describe('LlamaBackend (node-llama-cpp, synthetic model)', function () {
  let dir: string
  let backend: LlamaBackend
  let progress: string[]
  let llama: Llama
  let vocab: LlamaModel

  before(async function () {
    dir = await mkdtemp(join(tmpdir(), 'cocoon-llama-'))
    progress = []
    backend = new LlamaBackend({
      models: [{ name: MODEL, contextLength: CONTEXT }],
      dataDir: dir,
      maxConcurrent: 2,
      threads: 1,
      log: () => {}
    })
    await backend.start(line => progress.push(line))
    const nlc = await import('node-llama-cpp')
    llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error, logger: () => {} })
    vocab = await llama.loadModel({ modelPath: backend.models()[0].weightsPath ?? '', vocabOnly: true })
  })

  after(async function () {
    await backend?.stop()
    await llama?.dispose()
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  async function run (kind: InferenceKind, body: Record<string, unknown>, maxTokens: number, model = MODEL): Promise<Run> {
    const events: BackendEvent[] = []
    for await (const ev of backend.generate({ kind, model, body, maxTokens, signal: new AbortController().signal })) events.push(ev)
    const done = events[events.length - 1]
    if (done?.type !== 'done') throw new Error('no done event')
    const choices = events.flatMap(e => e.type === 'chunk' ? e.chunk.choices : [])
    const text = choices.map(c => 'delta' in c ? c.delta.content ?? '' : c.text).join('')
    return { events, choices, text, usage: done.usage, finishReason: done.finishReason }
  }

  async function expectError (promise: Promise<unknown>, code: string, param?: string): Promise<InferenceError> {
    try {
      await promise
    } catch (err) {
      expect(err).to.be.instanceOf(InferenceError)
      const e = err as InferenceError
      expect(e.code, e.message).to.equal(code)
      if (param !== undefined) expect(e.param).to.equal(param)
      return e
    }
    throw new Error(`expected InferenceError ${code}`)
  }

  it('loads the synthetic model and says its output is noise', async function () {
    const [m] = backend.models()
    expect(m.name).to.equal(MODEL)
    expect(m.synthetic).to.equal(true)
    expect(m.contextLength).to.equal(CONTEXT)
    expect(m.description).to.match(/random weights/).and.to.match(/noise/)
    expect((await stat(m.weightsPath ?? '')).size).to.be.greaterThan(1_000_000)
    expect(progress.some(l => /synthetic test model with random weights: output is noise/.test(l))).to.equal(true)
    const loading = progress.filter(l => l.startsWith(`loading ${MODEL}: `))
    expect(loading.length).to.be.within(1, 6)
    expect(loading[loading.length - 1]).to.equal(`loading ${MODEL}: 100%`)
    expect(backend.status()).to.include({ available: true, detail: '' })
  })

  it('streams a chat answer: role first, content pieces, a finish chunk, then usage from the tokenizer', async function () {
    const messages = [
      { role: 'system', content: 'You are a helpful peer.' },
      { role: 'user', content: [{ type: 'text', text: 'Hello there, ' }, { type: 'text', text: 'how are you?' }] }
    ]
    const r = await run('chat', { messages, temperature: 0.8, seed: 5 }, 24)
    const chunks = r.choices as ChatChoiceDelta[]
    expect(chunks.length).to.be.at.least(3)
    expect(chunks[0].delta.role).to.equal('assistant')
    expect(chunks.slice(1).every(c => c.delta.role === undefined)).to.equal(true)
    const pieces = chunks.slice(0, -1)
    expect(pieces.every(c => c.index === 0 && c.finish_reason === null && typeof c.delta.content === 'string' && c.delta.content !== '')).to.equal(true)
    expect(chunks[chunks.length - 1]).to.deep.equal({ index: 0, delta: { content: '' }, finish_reason: 'length' })
    expect(r.text.length).to.be.greaterThan(0)

    // The template applied by hand, tokenized independently: BOS, then ChatML with special tokens.
    const formatted = '<|im_start|>system\nYou are a helpful peer.<|im_end|>\n<|im_start|>user\nHello there, how are you?<|im_end|>\n<|im_start|>assistant\n'
    expect(r.usage).to.deep.equal({ promptTokens: 1 + vocab.tokenize(formatted, true).length, cachedTokens: 0, completionTokens: 24, reasoningTokens: 0 })
    expect(r.finishReason).to.equal('length')
    // Every piece is at least one token.
    expect(pieces.length).to.be.within(1, r.usage.completionTokens)
  })

  it('counts a longer conversation as more prompt tokens', async function () {
    const short = await run('chat', { messages: [{ role: 'user', content: 'Hi' }] }, 2)
    const long = await run('chat', { messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello, how can I help?' }, { role: 'user', content: 'Tell me about the network.' }] }, 2)
    const formatted = '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello, how can I help?<|im_end|>\n<|im_start|>user\nTell me about the network.<|im_end|>\n<|im_start|>assistant\n'
    expect(long.usage.promptTokens).to.equal(1 + vocab.tokenize(formatted, true).length)
    expect(long.usage.promptTokens).to.be.greaterThan(short.usage.promptTokens + 10)
  })

  it('completes a prompt with text chunks and a finish chunk', async function () {
    const prompt = 'Once upon a time, the network'
    const r = await run('completion', { prompt, temperature: 1, seed: 11 }, 16)
    const chunks = r.choices as CompletionChoiceDelta[]
    expect(chunks[chunks.length - 1]).to.deep.equal({ index: 0, text: '', finish_reason: 'length' })
    expect(chunks.slice(0, -1).every(c => c.finish_reason === null && c.text !== '')).to.equal(true)
    expect('delta' in chunks[0]).to.equal(false)
    // LlamaCompletion evaluates BOS + the prompt without SentencePiece's leading space.
    expect(r.usage).to.deep.equal({ promptTokens: 1 + vocab.tokenize(prompt, false, 'trimLeadingSpace').length, cachedTokens: 0, completionTokens: 16, reasoningTokens: 0 })
    expect(r.finishReason).to.equal('length')
  })

  it('gives the same text for the same seed, greedy or sampled', async function () {
    const body = { messages: [{ role: 'user', content: 'Say something' }] }
    const greedy1 = await run('chat', { ...body, temperature: 0, seed: 1 }, 20)
    const greedy2 = await run('chat', { ...body, temperature: 0, seed: 1 }, 20)
    expect(greedy1.text).to.equal(greedy2.text)
    const sampled1 = await run('completion', { prompt: 'The', temperature: 1, seed: 42 }, 20)
    const sampled2 = await run('completion', { prompt: 'The', temperature: 1, seed: 42 }, 20)
    const other = await run('completion', { prompt: 'The', temperature: 1, seed: 43 }, 20)
    expect(sampled1.text).to.equal(sampled2.text)
    expect(other.text).to.not.equal(sampled1.text)
  })

  it('stops at a stop sequence without emitting it', async function () {
    const full = await run('completion', { prompt: 'The peer said', temperature: 0 }, 40)
    const stop = full.text.slice(20, 24)
    expect(stop).to.have.length(4)
    const cut = await run('completion', { prompt: 'The peer said', temperature: 0, stop: [stop, 'zzzzzz'] }, 40)
    expect(cut.finishReason).to.equal('stop')
    expect(cut.text).to.equal(full.text.slice(0, full.text.indexOf(stop)))
    expect(cut.usage.completionTokens).to.be.greaterThan(0).and.lessThan(40)
  })

  it('cancels within 100 ms of the abort, counts it, and frees the sequence', async function () {
    const before = backend.status()
    const controller = new AbortController()
    let pieces = 0
    let abortedAt = 0
    const err = await expectError((async () => {
      for await (const ev of backend.generate({ kind: 'chat', model: MODEL, body: { messages: [{ role: 'user', content: 'Go on' }] }, maxTokens: 400, signal: controller.signal })) {
        if (ev.type === 'chunk' && ++pieces === 3) {
          abortedAt = performance.now()
          controller.abort()
        }
      }
    })(), 'cancelled')
    expect(performance.now() - abortedAt).to.be.lessThan(100)
    expect(err.httpStatus).to.equal(499)
    const after = backend.status()
    expect(after.cancelled).to.equal(before.cancelled + 1)
    expect(after.completed).to.equal(before.completed)
    expect(after.running).to.equal(0)
    // Both sequences serve again at once, with a clean context (exact prompt counts).
    const [a, b] = await Promise.all([
      run('chat', { messages: [{ role: 'user', content: 'Hi' }] }, 3),
      run('chat', { messages: [{ role: 'user', content: 'Hi' }] }, 3)
    ])
    expect(a.usage.promptTokens).to.equal(b.usage.promptTokens)
    expect(a.usage.completionTokens).to.equal(3)
    // The cancelled job's tokens count, though far fewer than its 400.
    const generated = backend.status().tokens - before.tokens - 6
    expect(generated).to.be.within(3, 100)
  })

  it('turns an already-aborted request away as cancelled', async function () {
    const controller = new AbortController()
    controller.abort()
    const before = backend.status()
    await expectError((async () => {
      for await (const ev of backend.generate({ kind: 'chat', model: MODEL, body: { messages: [{ role: 'user', content: 'x' }] }, maxTokens: 5, signal: controller.signal })) void ev
    })(), 'cancelled')
    // Turned away before it got a sequence: not a job, so no counter moves.
    expect(backend.status()).to.deep.equal(before)
  })

  it('runs two jobs at once, queues two more and refuses the fifth', async function () {
    const body = { messages: [{ role: 'user', content: 'Hello' }], temperature: 1 }
    const settled = Promise.allSettled([1, 2, 3, 4, 5].map(async seed => await run('chat', { ...body, seed }, 30)))
    await new Promise(resolve => setTimeout(resolve, 5))
    expect(backend.status().running).to.equal(2)
    const results = await settled
    const fulfilled = results.filter(r => r.status === 'fulfilled')
    expect(fulfilled).to.have.length(4)
    for (const r of fulfilled) expect(r.value.usage.completionTokens).to.equal(30)
    const refused = results.find(r => r.status === 'rejected')
    expect(refused?.reason).to.be.instanceOf(InferenceError)
    expect((refused?.reason as InferenceError).code).to.equal('overloaded')
    expect((refused?.reason as InferenceError).retryAfterMs).to.be.greaterThan(0)
    expect(backend.status().running).to.equal(0)
  })

  it('answers bad input with typed errors and keeps serving', async function () {
    await expectError(run('chat', { messages: [{ role: 'user', content: 'x' }] }, 5, 'no-such-model'), 'model_unknown')
    await expectError(run('chat', { messages: 'hello' }, 5), 'bad_request', 'messages')
    await expectError(run('chat', { messages: [] }, 5), 'bad_request', 'messages')
    await expectError(run('chat', { messages: [{ role: 'tool', content: 'x' }] }, 5), 'bad_request', 'messages')
    await expectError(run('chat', { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 5), 'bad_request', 'messages')
    await expectError(run('completion', { prompt: 42 }, 5), 'bad_request', 'prompt')
    await expectError(run('completion', { prompt: 'x', temperature: 9 }, 5), 'bad_request', 'temperature')
    await expectError(run('completion', { prompt: 'x', stop: [1] }, 5), 'bad_request', 'stop')
    await expectError(run('completion', { prompt: 'x' }, 0), 'bad_request', 'max_tokens')
    const long = 'token '.repeat(CONTEXT)
    await expectError(run('completion', { prompt: long }, 5), 'bad_request', 'prompt')
    await expectError(run('chat', { messages: [{ role: 'user', content: long }] }, 5), 'bad_request', 'messages')
    const ok = await run('completion', { prompt: 'x' }, 2)
    expect(ok.usage.completionTokens).to.equal(2)
  })

  it('ends at the context length with finish_reason length', async function () {
    // A prompt that leaves only a few free cells: the answer is cut there, without a context shift.
    const prompt = 'the '.repeat(CONTEXT - 6)
    const promptTokens = 1 + vocab.tokenize(prompt, false, 'trimLeadingSpace').length
    expect(promptTokens).to.be.within(CONTEXT - 10, CONTEXT - 2)
    const r = await run('completion', { prompt }, 100)
    expect(r.usage.promptTokens).to.equal(promptTokens)
    expect(r.usage.completionTokens).to.equal(CONTEXT - promptTokens)
    expect(r.finishReason).to.equal('length')
  })

  it('stops: running jobs end, new ones are refused as unavailable', async function () {
    const controller = new AbortController()
    const job = (async () => {
      for await (const ev of backend.generate({ kind: 'completion', model: MODEL, body: { prompt: 'x' }, maxTokens: 400, signal: controller.signal })) void ev
    })()
    job.catch(() => {}) // examined below, after stop()
    await new Promise(resolve => setTimeout(resolve, 20))
    let flips = 0
    backend.addEventListener('availability', () => { flips++ })
    await backend.stop()
    await expectError(job, 'unavailable')
    expect(backend.status()).to.include({ available: false, running: 0 })
    expect(flips).to.equal(1)
    await expectError(run('completion', { prompt: 'x' }, 2), 'unavailable')
  })
})

describe('StopScanner', function () {
  function scan (stops: string[], pieces: string[]): { out: string[], matched: boolean, rest: string } {
    const s = new StopScanner(stops)
    const out: string[] = []
    for (const p of pieces) {
      const r = s.push(p)
      if (r.emit !== '') out.push(r.emit)
      if (r.matched) return { out, matched: true, rest: s.flush() }
    }
    return { out, matched: false, rest: s.flush() }
  }

  it('passes text through when there are no stops', function () {
    expect(scan([], ['a', 'b'])).to.deep.equal({ out: ['a', 'b'], matched: false, rest: '' })
  })

  it('finds a stop split across pieces and emits only what precedes it', function () {
    expect(scan(['END'], ['abc E', 'N', 'D tail'])).to.deep.equal({ out: ['abc '], matched: true, rest: '' })
  })

  it('holds a possible start back and releases it once it cannot match', function () {
    expect(scan(['END'], ['x E', 'Nx', 'y'])).to.deep.equal({ out: ['x ', 'ENx', 'y'], matched: false, rest: '' })
    expect(scan(['END'], ['x EN'])).to.deep.equal({ out: ['x '], matched: false, rest: 'EN' })
  })

  it('stops at the earliest of several stops', function () {
    expect(scan(['bb', 'a b'], ['xa bb'])).to.deep.equal({ out: ['x'], matched: true, rest: '' })
  })
})

/**
 * The job module's two hops, end to end over an in-memory stream pair (no
 * network): a serving side (InboundHop) and a requesting side (OutboundHop),
 * with real sealing, real signed results and real payment channels.
 */
import '../../src/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { x25519 } from '@noble/curves/ed25519.js'
import { streamPair } from '@libp2p/utils'
import { expect } from 'chai'
import { DeadlineError, FrameTooLargeError, RemoteError, SealError } from '../../src/errors.js'
import { InferenceError } from '../../src/inference/types.js'
import { InboundHop } from '../../src/jobs/inbound.js'
import { JobLifecycle, JobStateError } from '../../src/jobs/lifecycle.js'
import { OutboundHop } from '../../src/jobs/outbound.js'
import { signResult, sha256, tokensAad, toProtocolError } from '../../src/jobs/wire.js'
import { ErrorCode, FramedStream, ProtocolError } from '../../src/p2p/framing.js'
import { JobEvent, WorkEvent } from '../../src/gen/job.pb.js'
import { JobPayee, JobPayer } from '../../src/settlement/job-payments.js'
import { openRequest, sealRequest } from '../../src/tee/seal.js'
import { openChannelPair } from '../channel-fixtures.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { OutboundEvents } from '../../src/jobs/outbound.js'
import type { HopPayer, HopPayment } from '../../src/jobs/payments.js'
import type { MessageCodec } from '../../src/p2p/framing.js'
import type { SealedChunk, SignedResult } from '../../src/gen/job.pb.js'
import type { ChannelPair } from '../channel-fixtures.js'
import type { PrivateKey } from '@libp2p/interface'

const PROTOCOL = '/cocoon/work/1.0.0'
const REQUEST_ID = 'ab'.repeat(16)
const MAX_FRAME = 64 * 1024
/** 1 000 nanoTON per completion token. */
const PRICE = { promptPerM: 0n, completionPerM: 1_000_000_000n, cachedBp: 0, reasoningBp: 0 }

interface Worker { key: PrivateKey, id: string }

async function newWorker (): Promise<Worker> {
  const key = await generateKeyPair('Ed25519')
  return { key, id: peerIdFromPrivateKey(key).toString() }
}

/** A sealed job between the two ends: the requester opens what the server seals. */
function sealedJob (): { open: (chunk: SealedChunk) => string, seal: (seq: number, text: string, tokens: number) => SealedChunk, digest: Uint8Array } {
  const privateKey = x25519.utils.randomSecretKey()
  const publicKey = x25519.getPublicKey(privateKey)
  const context = new TextEncoder().encode(`cocoon/job/${REQUEST_ID}`)
  const aad = new TextEncoder().encode('header')
  const { sealed, opener } = sealRequest(publicKey, new TextEncoder().encode('{"prompt":"hi"}'), context, aad)
  const { sealer } = openRequest(privateKey, publicKey, sealed, context, aad)
  return {
    open: (chunk) => new TextDecoder().decode(opener.open(chunk.seq, chunk.ciphertext, tokensAad(chunk.tokens))),
    seal: (seq, text, tokens) => ({ seq, ciphertext: new Uint8Array(sealer.seal(seq, new TextEncoder().encode(text), tokensAad(tokens))), tokens }),
    digest: sha256(sealed.ciphertext)
  }
}

interface Pair<E extends OutboundEvents> {
  inbound: InboundHop<E>
  outbound: OutboundHop<E>
  /** The serving side's job controller. */
  server: AbortController
  /** The requester's job signal. */
  job: AbortController
  serverStream: FramedStream
}

async function hopPair<E extends OutboundEvents> (events: MessageCodec<E>, resultOf: (e: E) => SignedResult | undefined, options: {
  worker?: string
  payer?: HopPayer
  paid?: boolean
  deadlineMs?: number
  requesterMaxFrame?: number
  onRouted?: (worker: string) => HopPayer | undefined
} = {}): Promise<Pair<E>> {
  const [a, b] = await streamPair({ protocol: PROTOCOL })
  const requester = new FramedStream(a, { protocol: PROTOCOL, maxFrameBytes: options.requesterMaxFrame ?? MAX_FRAME, deadlineMs: 5_000 })
  const serverStream = new FramedStream(b, { protocol: PROTOCOL, maxFrameBytes: MAX_FRAME, deadlineMs: 5_000 })
  const server = new AbortController()
  const job = new AbortController()
  const inbound = new InboundHop<E>({ framed: serverStream, events, controller: server, requester: 'proxy' })
  inbound.setPaid(options.paid ?? options.payer != null)
  const outbound = new OutboundHop<E>({
    framed: requester,
    events,
    resultOf,
    upstream: 'the server',
    requestId: REQUEST_ID,
    signal: job.signal,
    deadlineAtMs: performance.now() + (options.deadlineMs ?? 10_000),
    worker: options.worker,
    payer: options.payer,
    onRouted: options.onRouted
  })
  return { inbound, outbound, server, job, serverStream }
}

const workPair = async (options: Parameters<typeof hopPair>[2] = {}): Promise<Pair<WorkEvent>> => hopPair(WorkEvent, (e: WorkEvent) => e.final, options)

async function signed (worker: Worker, chunks: number, completionTokens: number, digest = new Uint8Array(32)): Promise<SignedResult> {
  return signResult(worker.key, {
    requestId: REQUEST_ID,
    model: 'm',
    worker: worker.id,
    usage: { promptTokens: 0, cachedTokens: 0, completionTokens, reasoningTokens: 0 },
    finishReason: 'stop',
    chunks,
    requestDigest: digest,
    queueMs: 0,
    firstChunkMs: 0,
    totalMs: 0
  })
}

/** Everything the requester's hop yields, or the error it ends with. */
async function drain (run: AsyncGenerator<{ type: string }, void>, onEvent?: (e: { type: string } & Record<string, unknown>) => void): Promise<{ events: Array<Record<string, unknown>>, error?: unknown }> {
  const events: Array<Record<string, unknown>> = []
  try {
    for await (const e of run) {
      const event = e as { type: string } & Record<string, unknown>
      events.push(event)
      onEvent?.(event)
    }
    return { events }
  } catch (error) {
    return { events, error }
  }
}

const failAnswer = (reason: unknown): ProtocolError => reason instanceof ProtocolError ? reason : reason instanceof InferenceError ? toProtocolError(reason) : new ProtocolError(ErrorCode.INTERNAL, 'the worker failed')

describe('job hops (src/jobs)', () => {
  let channels: ChannelPair[] = []

  afterEach(() => {
    for (const c of channels) { c.payerStore.close(); c.payeeStore.close() }
    channels = []
  })
  after(cleanupTempDirs)

  async function paidEnds (creditWindow: bigint, payThreshold: bigint, waits = { paymentWaitMs: 2_000, settleWaitMs: 2_000 }): Promise<{ payer: JobPayer, payee: JobPayee, pair: ChannelPair }> {
    const pair = openChannelPair(await tempDir())
    channels.push(pair)
    pair.payer.payThreshold = payThreshold
    return { payer: new JobPayer(pair.payer, PRICE), payee: new JobPayee(pair.payee, PRICE, creditWindow, waits), pair }
  }

  it('streams sealed chunks and a signed result; pays each chunk before handing it on; the last payment, racing the final event, settles the exact cost on both ends', async () => {
    const worker = await newWorker()
    const { payer, payee, pair } = await paidEnds(5_000n, 0n)
    const { inbound, outbound } = await workPair({ worker: worker.id, payer })
    const job = sealedJob()
    inbound.setPayee(payee)
    inbound.watch(5_000)
    const served = (async () => {
      for (const [i, text] of ['a', 'b', 'c'].entries()) await inbound.sendChunk(i + 1, () => job.seal(i, text, i + 1))
      payee.final({ promptTokens: 0, cachedTokens: 0, completionTokens: 3, reasoningTokens: 0 })
      // the final goes out at once: the payment for the last chunk and the settling one race it
      return inbound.finish({ final: await signed(worker, 3, 3) })
    })()
    const paidAtChunk: bigint[] = []
    const { events, error } = await drain(outbound.run(chunk => job.open(chunk)), (e) => { if (e.type === 'chunk') paidAtChunk.push(payer.cost) })
    expect(error).to.equal(undefined)
    expect(events.filter(e => e.type === 'chunk').map(e => e.opened)).to.deep.equal(['a', 'b', 'c'])
    expect(paidAtChunk, 'each chunk paid for before it was handed on').to.deep.equal([1_000n, 2_000n, 3_000n])
    const final = events.at(-1) as { type: string, usage: { completionTokens: number } }
    expect(final.type).to.equal('final')
    expect(final.usage.completionTokens).to.equal(3)
    await outbound.close()
    expect(await served, 'the serving side saw the job settled').to.equal(true)
    // every payment was written before the requester closed: the serving side stores them all
    const stored = Date.now() + 2_000
    while (pair.payee.received < 3_000n && Date.now() < stored) await new Promise(resolve => setTimeout(resolve, 10))
    expect(pair.payee.received).to.equal(3_000n)
    expect(payee.cost).to.equal(payer.cost)
    // the countersignature of the last state reaches the payer
    const deadline = Date.now() + 2_000
    while ((pair.payer.latest()?.payeeSignature?.byteLength ?? 0) === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect(pair.payer.latest()?.cumulative).to.equal(3_000n)
    expect(pair.payer.latest()?.payeeSignature?.byteLength).to.be.greaterThan(0)
    expect(inbound.lifecycle.state).to.equal('closed')
    expect(outbound.lifecycle.state).to.equal('closed')
  })

  it('counts as the job\'s settlement only the payment the payer marks as such, not an earlier one that arrives after the final', async () => {
    const { payer, payee, pair } = await paidEnds(10_000n, 0n, { paymentWaitMs: 2_000, settleWaitMs: 300 })
    const usage = { promptTokens: 0, cachedTokens: 0, completionTokens: 2, reasoningTokens: 0 }
    const first = await payer.onTokens(1) as HopPayment
    payee.delivered(1)
    payee.delivered(2)
    payee.final(usage)
    // a payment the payer sent before it saw the final, landing after it
    await payee.accept(first)
    expect(payee.settled(), '1 000 of 2 000 paid: not settled').to.equal(false)
    const settlement = await payer.onFinal(usage)
    expect(settlement?.settles).to.equal(true)
    expect(settlement?.cumulative).to.equal(2_000n)
    await payee.accept(settlement as HopPayment)
    expect(payee.settled()).to.equal(true)
    expect(pair.payee.received).to.equal(2_000n)
    // nothing owed at the end: the payer re-sends its latest state as the settlement, and the payee answers it
    const again = await new JobPayer(pair.payer, PRICE).onFinal({ ...usage, completionTokens: 0 })
    expect(again?.cumulative).to.equal(2_000n)
    expect(again?.settles).to.equal(true)
    expect(await payee.accept(again as HopPayment)).to.be.instanceOf(Uint8Array)
  })

  it('rejects a chunk that does not open, and pays nothing for it', async () => {
    const worker = await newWorker()
    const { payer, pair } = await paidEnds(5_000n, 0n)
    const { inbound, outbound } = await workPair({ worker: worker.id, payer })
    const job = sealedJob()
    const chunk = job.seal(0, 'secret', 1)
    chunk.ciphertext[0] ^= 1
    void inbound.send({ chunk })
    const { events, error } = await drain(outbound.run(c => job.open(c)))
    expect(events).to.deep.equal([])
    expect(error).to.be.instanceOf(SealError)
    expect(payer.cost).to.equal(0n)
    expect(pair.payer.paid).to.equal(0n)
    outbound.dispose()
  })

  it('rejects a claimed token count that goes back, and a chunk sealed over another count', async () => {
    const worker = await newWorker()
    const { inbound, outbound } = await workPair({ worker: worker.id })
    const job = sealedJob()
    void inbound.send({ chunk: job.seal(0, 'a', 5) })
    void inbound.send({ chunk: job.seal(1, 'b', 4) })
    const { events, error } = await drain(outbound.run(c => job.open(c)))
    expect(events).to.have.length(1)
    expect(error).to.be.instanceOf(InferenceError)
    expect((error as Error).message).to.match(/token count went back from 5 to 4/)
    outbound.dispose()

    const other = await workPair({ worker: worker.id })
    const job2 = sealedJob()
    // a hop that inflates the clear count breaks the seal
    void other.inbound.send({ chunk: { ...job2.seal(0, 'a', 1), tokens: 100 } })
    const inflated = await drain(other.outbound.run(c => job2.open(c)))
    expect(inflated.error).to.be.instanceOf(SealError)
    other.outbound.dispose()
  })

  it('rejects a result whose chunk count differs from what arrived, or signed by someone else', async () => {
    const worker = await newWorker()
    const { inbound, outbound } = await workPair({ worker: worker.id })
    const job = sealedJob()
    void inbound.send({ chunk: job.seal(0, 'a', 1) })
    void inbound.send({ final: await signed(worker, 2, 1) })
    const cut = await drain(outbound.run(c => job.open(c)))
    expect((cut.error as Error).message).to.match(/counted 2 chunks but 1 arrived/)
    outbound.dispose()

    const forger = await newWorker()
    const other = await workPair({ worker: worker.id })
    void other.inbound.send({ final: await signed(forger, 0, 0) })
    const forged = await drain(other.outbound.run(c => c))
    expect((forged.error as Error).message).to.match(/signature does not verify/)
    other.outbound.dispose()
  })

  it('carries a cancel from the requester to the serving side within 100 ms', async () => {
    const worker = await newWorker()
    const { inbound, outbound, server, job } = await workPair({ worker: worker.id })
    const sealed = sealedJob()
    inbound.watch(5_000)
    let cancelledAt = 0
    server.signal.addEventListener('abort', () => { cancelledAt = performance.now() })
    const running = drain(outbound.run(c => sealed.open(c)))
    await inbound.sendChunk(1, () => sealed.seal(0, 'a', 1))
    await new Promise(resolve => setTimeout(resolve, 20))
    const abortedAt = performance.now()
    job.abort()
    const { error } = await running
    expect(error).to.not.equal(undefined)
    const deadline = performance.now() + 1_000
    while (cancelledAt === 0 && performance.now() < deadline) await new Promise(resolve => setTimeout(resolve, 2))
    expect(cancelledAt - abortedAt, 'cancel latency (ms)').to.be.within(0, 100)
    expect(server.signal.reason).to.be.instanceOf(InferenceError)
    expect((server.signal.reason as InferenceError).code).to.equal('cancelled')
    expect(inbound.cancelledAtMs).to.be.greaterThan(0)
    expect(await inbound.fail(new Error('ignored'), failAnswer), 'a cancel is no failure to answer').to.equal(undefined)
    expect(inbound.lifecycle.state).to.equal('cancelled')
    outbound.dispose()
  })

  it('stops a requester that stops paying within the credit window, with PAYMENT_REQUIRED', async () => {
    const worker = await newWorker()
    // the requester pays nothing, whatever it owes
    const freeloader: HopPayer = { channel: '0:' + 'ab'.repeat(32), cost: 0n, onTokens: async () => null, onFinal: async () => null, countersigned: () => {} }
    const { payee, pair } = await paidEnds(3_000n, 0n, { paymentWaitMs: 150, settleWaitMs: 150 })
    const { inbound, outbound } = await workPair({ worker: worker.id, payer: freeloader })
    const job = sealedJob()
    inbound.setPayee(payee)
    inbound.watch(5_000)
    const requesting = drain(outbound.run(c => job.open(c)))
    let sent = 0
    const started = performance.now()
    const serving = (async () => {
      for (let i = 0; i < 20; i++) {
        await inbound.sendChunk(i + 1, () => job.seal(i, 'x', i + 1))
        sent++
      }
    })()
    const stopped = await serving.then(() => undefined, (err: unknown) => err)
    expect(stopped).to.be.instanceOf(ProtocolError)
    expect((stopped as ProtocolError).errorCode).to.equal(ErrorCode.PAYMENT_REQUIRED)
    expect(performance.now() - started, 'it waited about paymentWaitMs, not forever').to.be.below(1_500)
    expect(sent, 'chunks delivered unpaid: at most the credit window (3 tokens)').to.equal(3)
    expect(pair.payee.unpaid).to.equal(3_000n)
    const answer = await inbound.fail(stopped, failAnswer)
    expect(answer?.errorCode).to.equal(ErrorCode.PAYMENT_REQUIRED)
    const { error } = await requesting
    expect(error).to.be.instanceOf(RemoteError)
    expect((error as RemoteError).remoteCode).to.equal(ErrorCode.PAYMENT_REQUIRED)
    outbound.dispose()
  })

  it('ends at the deadline on each side: a silent server, a silent requester', async () => {
    const worker = await newWorker()
    const silentServer = await workPair({ worker: worker.id, deadlineMs: 150 })
    const started = performance.now()
    const { error } = await drain(silentServer.outbound.run(c => c))
    expect(error).to.be.instanceOf(DeadlineError)
    expect(performance.now() - started).to.be.within(100, 1_000)
    silentServer.outbound.dispose()

    // the requester neither pays, cancels nor closes: past the idle bound that counts as gone
    const silentRequester = await workPair({ worker: worker.id })
    silentRequester.inbound.watch(150)
    const cancelled = await new Promise<unknown>(resolve => { silentRequester.server.signal.addEventListener('abort', () => { resolve(silentRequester.server.signal.reason) }) })
    expect((cancelled as InferenceError).code).to.equal('cancelled')
    silentRequester.outbound.dispose()
  })

  it('answers a failure with its error frame, which the requester reads as a typed error with the retry hint', async () => {
    const worker = await newWorker()
    const { inbound, outbound } = await workPair({ worker: worker.id })
    const running = drain(outbound.run(c => c))
    const answer = await inbound.fail(new ProtocolError(ErrorCode.OVERLOADED, 'all 2 slots are busy', 500), failAnswer)
    expect(answer?.errorCode).to.equal(ErrorCode.OVERLOADED)
    expect(inbound.lifecycle.state).to.equal('failed')
    const { error } = await running
    expect(error).to.be.instanceOf(RemoteError)
    expect((error as RemoteError).remoteCode).to.equal(ErrorCode.OVERLOADED)
    expect((error as RemoteError).retryAfterMs).to.equal(500)
    outbound.dispose()
  })

  it('refuses a frame over the requester\'s limit with a typed error', async () => {
    const worker = await newWorker()
    const { inbound, outbound } = await workPair({ worker: worker.id, requesterMaxFrame: 1_024 })
    void inbound.send({ chunk: { seq: 0, ciphertext: new Uint8Array(4_000), tokens: 1 } })
    const { error } = await drain(outbound.run(c => c))
    expect(error).to.be.instanceOf(FrameTooLargeError)
    outbound.dispose()
  })

  it('refuses a payment on a job that names no channel', async () => {
    const worker = await newWorker()
    const { payer } = await paidEnds(5_000n, 0n)
    const unpaid = await workPair({ worker: worker.id, payer, paid: false })
    unpaid.inbound.watch(5_000)
    const job = sealedJob()
    const running = drain(unpaid.outbound.run(c => job.open(c)))
    await unpaid.inbound.send({ chunk: job.seal(0, 'a', 1) })
    const reason = await new Promise<unknown>(resolve => {
      if (unpaid.server.signal.aborted) resolve(unpaid.server.signal.reason)
      unpaid.server.signal.addEventListener('abort', () => { resolve(unpaid.server.signal.reason) })
    })
    expect((reason as ProtocolError).errorCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    expect((reason as Error).message).to.match(/not paid through a channel/)
    await unpaid.inbound.fail(reason, failAnswer)
    const { error } = await running
    expect((error as RemoteError).remoteCode, 'the requester learns why').to.equal(ErrorCode.PAYMENT_REFUSED)
    unpaid.outbound.dispose()
  })

  it('on the client\'s hop: takes the routed worker the role accepts, refuses one it does not, and a switch after the first chunk', async () => {
    const worker = await newWorker()
    const routed: string[] = []
    const pair = await hopPair(JobEvent, (e: JobEvent) => e.final?.result, { onRouted: (w) => { routed.push(w); if (w !== worker.id) throw new InferenceError('worker_failed', `not sealed to ${w}`); return undefined } })
    const job = sealedJob()
    void pair.inbound.send({ routed: { worker: worker.id, attempt: 1 } })
    void pair.inbound.send({ chunk: job.seal(0, 'a', 1) })
    void pair.inbound.send({ routed: { worker: worker.id, attempt: 2 } })
    const { events, error } = await drain(pair.outbound.run(c => job.open(c)))
    expect(events.map(e => e.type)).to.deep.equal(['routed', 'chunk'])
    expect((error as Error).message).to.match(/switched workers mid-stream/)
    pair.outbound.dispose()

    const other = await hopPair(JobEvent, (e: JobEvent) => e.final?.result, { onRouted: (w) => { throw new InferenceError('worker_failed', `not sealed to ${w}`) } })
    void other.inbound.send({ routed: { worker: 'someone-else', attempt: 1 } })
    const refused = await drain(other.outbound.run(c => c))
    expect((refused.error as Error).message).to.match(/not sealed to someone-else/)
    other.outbound.dispose()

    const early = await hopPair(JobEvent, (e: JobEvent) => e.final?.result, { onRouted: () => undefined })
    void early.inbound.send({ chunk: job.seal(0, 'a', 1) })
    const unnamed = await drain(early.outbound.run(c => c))
    expect((unnamed.error as Error).message).to.match(/before naming the worker/)
    early.outbound.dispose()
  })
})

describe('job lifecycle', () => {
  it('allows the transitions drawn in src/jobs/lifecycle.ts and no others', () => {
    const worker = new JobLifecycle()
    worker.to('streaming')
    worker.to('final')
    expect(worker.finished).to.equal(true)
    expect(() => { worker.to('failed') }, 'no failure after the final result').to.throw(JobStateError)
    worker.to('closed')
    expect(worker.ended).to.equal(true)

    const relay = new JobLifecycle()
    relay.to('routed')
    relay.to('routed') // failover before the first chunk
    relay.to('streaming')
    expect(() => { relay.to('routed') }, 'no failover after the first chunk').to.throw(JobStateError)
    relay.to('cancelled')
    expect(relay.ended).to.equal(true)
    expect(relay.tryTo('failed')).to.equal(false)
    expect(relay.state).to.equal('cancelled')
  })
})

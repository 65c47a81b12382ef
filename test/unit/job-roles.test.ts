/**
 * The three job roles end to end without a network: the client's JobClient,
 * the proxy's ProxyJobService and two workers' WorkService, joined by
 * in-memory stream pairs, with real sealing, simulated attestation and the
 * synthetic backend. What the proxy knows of the workers (its registry and
 * their evidence) is given directly.
 */
import '../../src/polyfills.js'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { x25519 } from '@noble/curves/ed25519.js'
import { expect } from 'chai'
import { InferenceError } from '../../src/inference/types.js'
import { Evidence as WireEvidence } from '../../src/gen/capacity.pb.js'
import { JobClient } from '../../src/roles/client/job-client.js'
import { ProxyJobService } from '../../src/roles/proxy/job-service.js'
import { SyntheticBackend } from '../../src/roles/worker/backends/synthetic.js'
import { WorkService } from '../../src/roles/worker/work-service.js'
import type { WorkPayments } from '../../src/roles/worker/work-service.js'
import { Attestor, EvidenceVerifier } from '../../src/tee/attestor.js'
import { evidenceToWire } from '../../src/tee/attest-service.js'
import { epochAt } from '../../src/tee/binding.js'
import { policyFor } from '../../src/tee/policy.js'
import { buildDigest, SimulatedProvider, SimulatedVerifier, simulatedMeasurements } from '../../src/tee/simulated.js'
import { openChannelPair } from '../channel-fixtures.js'
import { MemoryNet } from '../memory-net.js'
import type { MemoryHost } from '../memory-net.js'
import { cleanupTempDirs, noLog, tempDir } from '../helpers.js'
import type { ChannelPair } from '../channel-fixtures.js'
import type { ChannelManager } from '../../src/settlement/channel-manager.js'
import type { ApiEvent } from '../../src/roles/client/api-types.js'
import type { ProxyPool } from '../../src/roles/client/proxy-pool.js'
import type { WorkerEntry, WorkerOffer, WorkerRegistry } from '../../src/roles/proxy/worker-registry.js'
import type { WorkerEvidence } from '../../src/roles/proxy/worker-evidence.js'
import type { WorkerLookup } from '../../src/roles/proxy/worker-lookup.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { SyntheticBackendInit } from '../../src/roles/worker/backends/synthetic.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

const MODEL = 'synthetic-1'
const MEASUREMENTS = simulatedMeasurements({ buildDigest: buildDigest(), configDigest: new TextEncoder().encode('job roles test') })

interface Worker {
  id: string
  host: MemoryHost
  service: WorkService
  backend: SyntheticBackend
  evidence: Uint8Array
  jobPublicKey: Uint8Array
}

async function startWorker (net: MemoryNet, tuning: Partial<SyntheticBackendInit> = {}, priceCompletionPerM = 1_000n, payments?: WorkPayments): Promise<Worker> {
  const key: PrivateKey = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key)
  const jobPrivate = x25519.utils.randomSecretKey()
  const jobPublicKey = x25519.getPublicKey(jobPrivate)
  const host = net.add(peerId)
  const backend = new SyntheticBackend({ models: [{ name: MODEL, contextLength: 4096 }], chunks: 8, chunkBytes: 16, ...tuning })
  await backend.start()
  const service = new WorkService(host, {
    backend,
    jobKey: { privateKey: jobPrivate, publicKey: jobPublicKey },
    signer: key,
    peerId: peerId.toString(),
    models: [{ name: MODEL, maxConcurrent: 4, contextLength: 4096, pricePromptPerM: 0n, priceCompletionPerM }],
    ...(payments == null ? {} : { payments }),
    log: noLog
  })
  await service.start()
  const attestor = new Attestor({ provider: new SimulatedProvider(MEASUREMENTS), libp2pPublicKey: publicKeyToProtobuf(key.publicKey), jobPublicKey })
  const evidence = WireEvidence.encode(evidenceToWire(await attestor.evidence({ kind: 'epoch', epoch: epochAt(Date.now()) })))
  return { id: peerId.toString(), host, service, backend, evidence, jobPublicKey }
}

/** The proxy's view of a worker, as its registry would hold it. */
function listed (w: Worker, priceCompletionPerM: bigint): { entry: WorkerEntry, offer: WorkerOffer } {
  const offer: WorkerOffer = { model: MODEL, weightsHash: '', contextLength: 4096, pricePromptPerM: 0n, priceCompletionPerM, maxConcurrent: 4, freeSlots: 4, synthetic: true, description: '' }
  const now = Date.now()
  return {
    offer,
    entry: {
      peerId: w.id, offers: [offer], accelerators: [], seq: 1n, announcedAtMs: now, lastSeenMs: now, ttlMs: 60_000, state: 'up', source: 'gossip', successRate: 1, jobs: { ok: 0, failed: 0 },
      attestation: { kind: 0, digest: '', imageHash: '', tcbStatus: 'UpToDate', jobPublicKey: w.jobPublicKey, verifiedAtMs: now }
    } as unknown as WorkerEntry
  }
}

/** Both legs' channels of a paid swarm. */
interface Channels {
  clientToProxy: ChannelPair
  proxyToWorker: Map<string, ChannelPair>
}

interface Swarm {
  channels?: Channels
  client: JobClient
  proxy: ProxyJobService
  /** The worker the proxy ranks first, and the one after it. */
  first: Worker
  second: Worker
  results: Array<{ worker: string, ok: boolean }>
}

/** Worker price per completion token, nanoTON (1e9 per 1M tokens). */
const PAID_PRICE_PER_TOKEN = 1_000n
const open: ChannelPair[] = []

/** The payee side's view of its channels, as the settlement's manager would give it. */
function manager (pairs: ChannelPair[], creditWindow: bigint): ChannelManager {
  return {
    payee: (address: string) => pairs.find(p => p.payee.address === address)?.payee,
    terms: () => ({ creditWindow })
  } as unknown as ChannelManager
}

async function swarm (firstTuning: Partial<SyntheticBackendInit> = {}, requestTimeoutMs = 10_000, paid?: { creditWindow: bigint, firstPayHangs?: boolean }): Promise<Swarm> {
  const net = new MemoryNet()
  const workerPrice = paid == null ? 1_000n : PAID_PRICE_PER_TOKEN * 1_000_000n
  const proxyId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const clientId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const pair = async (payeeSeesPeer: string, address: string): Promise<ChannelPair> => {
    const p = openChannelPair(await tempDir(), { peerId: payeeSeesPeer, address })
    p.payer.payThreshold = 0n // a state for every chunk: what was paid is exactly what arrived
    open.push(p)
    return p
  }
  const legs = paid == null ? undefined : { client: await pair(clientId.toString(), '0:' + '01'.repeat(32)), first: await pair(proxyId.toString(), '0:' + '02'.repeat(32)), second: await pair(proxyId.toString(), '0:' + '03'.repeat(32)) }
  const workerPayments = (leg: ChannelPair | undefined): WorkPayments | undefined => leg == null || paid == null
    ? undefined
    : { manager: manager([leg], paid.creditWindow), required: true, paymentWaitMs: 2_000, settleWaitMs: 500 }
  const first = await startWorker(net, firstTuning, workerPrice, workerPayments(legs?.first))
  const second = await startWorker(net, {}, workerPrice * 16n, workerPayments(legs?.second))
  const proxyHost = net.add(proxyId)
  const channels: Channels | undefined = legs == null ? undefined : { clientToProxy: legs.client, proxyToWorker: new Map([[first.id, legs.first], [second.id, legs.second]]) }
  const results: Array<{ worker: string, ok: boolean }> = []
  // the first worker is much cheaper: it ranks first whatever the routing jitter
  const offers = [listed(first, workerPrice), listed(second, workerPrice * 16n)]
  const registry = {
    offersFor: (model: string) => model === MODEL ? offers : [],
    models: () => [],
    recordResult: (worker: string, r: { ok: boolean }) => { results.push({ worker, ok: r.ok }) }
  } as unknown as WorkerRegistry
  const workers = new Map([first, second].map(w => [w.id, w]))
  const evidence = {
    get: async (peer: PeerId) => new Uint8Array(workers.get(peer.toString())?.evidence ?? new Uint8Array(0)),
    forget: () => {}
  } as unknown as WorkerEvidence
  const proxy = new ProxyJobService(proxyHost as unknown as CocoonLibp2p, {
    registry,
    evidence,
    lookup: { find: async () => {} } as unknown as WorkerLookup,
    maxJobs: 16,
    maxJobsPerClient: 8,
    log: noLog,
    ...(channels == null || paid == null
      ? {}
      : {
          payments: {
            manager: manager([channels.clientToProxy], paid.creditWindow),
            required: true,
            commissionBp: 0,
            payerFor: async (worker: string, signal: AbortSignal) => {
              // a worker whose /cocoon/pay never answers: setting up payment hangs until the proxy gives up
              if (paid.firstPayHangs === true && worker === first.id) await new Promise((_resolve, reject) => { signal.addEventListener('abort', () => { reject(signal.reason) }, { once: true }) })
              return (channels as Channels).proxyToWorker.get(worker)?.payer ?? (() => { throw new Error(`no channel to ${worker}`) })()
            },
            paymentWaitMs: 2_000,
            settleWaitMs: 500,
            setupWaitMs: 300
          }
        })
  })
  await proxy.start()
  const clientHost = net.add(clientId)
  const pool = {
    pick: async () => proxyId.toString(),
    attested: async () => [proxyId.toString()],
    jobStarted: () => {},
    jobEnded: () => {},
    demote: () => {}
  } as unknown as ProxyPool
  const client = new JobClient(clientHost as unknown as CocoonLibp2p, {
    proxies: pool,
    verifier: new EvidenceVerifier({ policy: policyFor('local'), verifiers: [new SimulatedVerifier()] }),
    maxPricePromptPerM: 1_000_000n,
    maxPriceCompletionPerM: 10n ** 12n,
    defaultMaxTokens: 64,
    requestTimeoutMs,
    log: noLog,
    ...(channels == null ? {} : { payments: { payerFor: async () => (channels as Channels).clientToProxy.payer } })
  })
  return { channels, client, proxy, first, second, results }
}

const job = { requestId: 'cd'.repeat(16), kind: 'chat' as const, model: MODEL, body: { messages: [{ role: 'user', content: 'hello' }] }, maxTokens: null }

async function collect (run: AsyncGenerator<ApiEvent>, onChunk?: (n: number) => void): Promise<{ chunks: number, done?: Extract<ApiEvent, { type: 'done' }>, error?: unknown }> {
  let chunks = 0
  try {
    for await (const event of run) {
      if (event.type !== 'chunk') return { chunks, done: event }
      chunks++
      onChunk?.(chunks)
    }
    return { chunks }
  } catch (error) {
    return { chunks, error }
  }
}

describe('job roles over in-memory streams', () => {
  afterEach(() => {
    for (const p of open.splice(0)) { p.payerStore.close(); p.payeeStore.close() }
  })
  after(cleanupTempDirs)

  it('answers through the proxy and the worker it ranks first, with a result the client checked', async () => {
    const s = await swarm()
    const { chunks, done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(error).to.equal(undefined)
    expect(chunks, 'eight chunks of text and the one that carries finish_reason').to.equal(9)
    expect(done?.cocoon?.worker).to.equal(s.first.id)
    expect(done?.usage.completionTokens).to.equal(8)
    expect(s.first.service.status().completed).to.equal(1)
    expect(s.proxy.status().relayed).to.equal(1)
    expect(s.results).to.deep.equal([{ worker: s.first.id, ok: true }])
  })

  it('fails over to the next worker when the first dies before its first chunk; the client sees one clean answer', async () => {
    const s = await swarm()
    s.first.host.crash()
    const { chunks, done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(error).to.equal(undefined)
    expect(chunks, 'eight chunks of text and the one that carries finish_reason').to.equal(9)
    expect(done?.cocoon?.worker).to.equal(s.second.id)
    expect(s.proxy.status().retried).to.equal(1)
    expect(s.results).to.deep.equal([{ worker: s.first.id, ok: false }, { worker: s.second.id, ok: true }])
  })

  it('fails over when the first worker\'s backend fails before anything was sent', async () => {
    const s = await swarm({ failAfterChunks: 0 })
    const { done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(error).to.equal(undefined)
    expect(done?.cocoon?.worker).to.equal(s.second.id)
    expect(s.first.service.status().failed).to.equal(1)
  })

  it('ends with a typed error, and no second worker, when the worker fails after its first chunk', async () => {
    const s = await swarm({ failAfterChunks: 3, intervalMs: 15 })
    const { chunks, done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(done).to.equal(undefined)
    expect(chunks, 'what arrived before the failure was delivered').to.be.within(1, 3)
    expect(error).to.be.instanceOf(InferenceError)
    expect((error as InferenceError).code).to.equal('worker_failed')
    // one chunk per frame here (the backend paces them): the proxy counts the frames it relayed
    expect((error as Error).message).to.include(`failed after ${chunks} chunk`)
    expect(s.proxy.status().retried).to.equal(0)
    expect(s.second.service.status().completed).to.equal(0)
  })

  it('carries a cancel from the client to the worker within 100 ms, which stops generating', async () => {
    const s = await swarm({ chunks: 200, intervalMs: 20 })
    const controller = new AbortController()
    let abortedAtMs = 0
    const { error } = await collect(s.client.run(job, controller.signal), (n) => {
      if (n === 3) {
        abortedAtMs = Date.now()
        controller.abort()
      }
    })
    expect((error as InferenceError).code).to.equal('cancelled')
    const deadline = Date.now() + 2_000
    while (s.first.service.status().recentCancels.length === 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 5))
    const [cancel] = s.first.service.status().recentCancels
    expect(cancel, 'the worker recorded the cancel').to.not.equal(undefined)
    expect(cancel.cancelledAtMs - abortedAtMs, 'client abort → worker').to.be.within(0, 100)
    expect(cancel.stoppedAtMs - cancel.cancelledAtMs, 'cancel → generation stopped').to.be.within(0, 100)
    expect(cancel.chunksSent).to.be.below(200)
  })

  it('answers a job that outlives its deadline with a timeout at the client, and stops the worker', async () => {
    const s = await swarm({ firstChunkDelayMs: 5_000 }, 400)
    const started = Date.now()
    const { error } = await collect(s.client.run(job, new AbortController().signal))
    expect((error as InferenceError).code).to.equal('timeout')
    // each hop hands the next one its deadline less a margin, so the worker's ends first and is what the client hears
    expect(Date.now() - started).to.be.within(100, 1_500)
    const deadline = Date.now() + 2_000
    while (s.first.backend.status().running > 0 && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 10))
    expect(s.first.backend.status().running, 'the worker stopped generating').to.equal(0)
  })

  it('pays as it streams on both legs: the client pays exactly the tokens it received, and the worker gets the same', async () => {
    const s = await swarm({}, 10_000, { creditWindow: 5_000n })
    const { chunks, done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(error).to.equal(undefined)
    expect(chunks).to.equal(9)
    const { clientToProxy, proxyToWorker } = s.channels as Channels
    const toWorker = proxyToWorker.get(s.first.id) as ChannelPair
    expect(done?.cost?.client).to.equal('8000')
    expect(clientToProxy.payer.paid, 'client paid 8 tokens').to.equal(8_000n)
    const landed = Date.now() + 2_000
    while ((clientToProxy.payee.received < 8_000n || toWorker.payee.received < 8_000n) && Date.now() < landed) await new Promise(resolve => setTimeout(resolve, 10))
    expect(clientToProxy.payee.received, 'the proxy stored it').to.equal(8_000n)
    expect(toWorker.payer.paid, 'the proxy paid the worker the same (no commission here)').to.equal(8_000n)
    expect(toWorker.payee.received).to.equal(8_000n)
  })

  it('when the worker fails after some chunks, the client pays only for what it received', async () => {
    const s = await swarm({ failAfterChunks: 3, intervalMs: 15 }, 10_000, { creditWindow: 5_000n })
    const { chunks, error } = await collect(s.client.run(job, new AbortController().signal))
    expect((error as InferenceError).code).to.equal('worker_failed')
    expect(chunks).to.be.within(1, 3)
    const { clientToProxy, proxyToWorker } = s.channels as Channels
    const toWorker = proxyToWorker.get(s.first.id) as ChannelPair
    expect(clientToProxy.payer.paid, 'one token per chunk received, at 1 000 nanoTON').to.equal(BigInt(chunks) * PAID_PRICE_PER_TOKEN)
    // the proxy paid the worker for the frames the worker delivered, never more than the client paid it
    expect(toWorker.payer.paid <= clientToProxy.payer.paid, `worker paid ${toWorker.payer.paid}, client paid ${clientToProxy.payer.paid}`).to.equal(true)
    expect((proxyToWorker.get(s.second.id) as ChannelPair).payer.paid, 'nothing for the other worker').to.equal(0n)
  })
})

describe('job roles over in-memory streams: a worker whose payment setup hangs', () => {
  afterEach(async () => {
    for (const p of open.splice(0)) { p.payerStore.close(); p.payeeStore.close() }
    await cleanupTempDirs()
  })

  it('costs the job only the setup wait: the next worker answers, and the first is marked as failed', async () => {
    const s = await swarm({}, 10_000, { creditWindow: 5_000n, firstPayHangs: true })
    const started = Date.now()
    const { chunks, done, error } = await collect(s.client.run(job, new AbortController().signal))
    expect(error).to.equal(undefined)
    expect(chunks).to.equal(9)
    expect(done?.cocoon?.worker, 'the second worker answered').to.equal(s.second.id)
    expect(Date.now() - started, 'held for the setup wait, not the job deadline').to.be.below(3_000)
    expect(s.results).to.deep.include({ worker: s.first.id, ok: false })
  })
})

describe('job roles over in-memory streams: a client that stops paying', () => {
  afterEach(async () => {
    for (const p of open.splice(0)) { p.payerStore.close(); p.payeeStore.close() }
    await cleanupTempDirs()
  })

  it('is stopped by the proxy within the credit window with PAYMENT_REQUIRED, and the worker stops too', async () => {
    const window = 2_000n
    const s = await swarm({ intervalMs: 5 }, 10_000, { creditWindow: window })
    const { clientToProxy, proxyToWorker } = s.channels as Channels
    // the client signs for its first two tokens, and never for more however much it owes
    const honestPayUpTo = clientToProxy.payer.payUpTo.bind(clientToProxy.payer)
    clientToProxy.payer.payUpTo = (cumulative: bigint) => honestPayUpTo(cumulative < 2_000n ? cumulative : 2_000n)
    const started = Date.now()
    const { chunks, error } = await collect(s.client.run(job, new AbortController().signal))
    const paid = clientToProxy.payer.paid
    expect(error, `the job ends with an error, not an answer (${chunks} chunks, ${paid} paid, ${clientToProxy.payee.unpaid} unpaid at the proxy, ${clientToProxy.payee.received} received)`).to.be.instanceOf(InferenceError)
    expect((error as InferenceError).message).to.match(/payment/i)
    expect(Date.now() - started, 'stopped after the proxy\'s payment wait, not the job deadline').to.be.below(6_000)
    expect(paid, 'it paid for its first tokens, then stopped').to.equal(2_000n)
    expect(clientToProxy.payee.received, 'what the client paid, as the proxy stored it').to.equal(paid)
    // what the proxy delivered and was not paid for: some credit, never more than one window
    const unpaid = clientToProxy.payee.unpaid
    expect(unpaid > 0n && unpaid <= window, `${unpaid} nanoTON delivered unpaid (${chunks} chunks for ${paid})`).to.equal(true)
    const toWorker = proxyToWorker.get(s.first.id) as ChannelPair
    // the proxy stops paying the worker too: its loss is bounded by its credit window to the client
    expect(toWorker.payer.paid - paid <= window, `the proxy paid the worker ${toWorker.payer.paid}`).to.equal(true)
    const stoppedBy = Date.now() + 2_000
    while (s.first.backend.status().running > 0 && Date.now() < stoppedBy) await new Promise(resolve => setTimeout(resolve, 10))
    expect(s.first.backend.status().running, 'the worker stopped generating').to.equal(0)
  })
})

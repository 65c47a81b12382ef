/**
 * Paid inference end to end on the devnet (the TON emulator, shared by the
 * nodes of this process): clients pay the proxy as chunks stream in, the
 * proxy pays the workers, channels close on chain and the balances match
 * what was used. Faults: a client that stops paying, a proxy killed
 * mid-stream and restarted, a proxy that vanishes for good, a payer that
 * closes alone with an older state.
 */
import { createServer } from 'node:net'
import { expect } from 'chai'
import OpenAI from 'openai'
import { Address } from '@ton/core'
import { OPERATION_VALUE } from '../../contracts/payment-channel.js'
import { Devnet } from '../../src/settlement/chain/index.js'
import { startNode } from '../../src/roles/runtime.js'
import { toContractState } from '../../src/settlement/channel-state.js'
import { lpStream } from '@libp2p/utils'
import { PAY_MAX_FRAME_BYTES, PAY_PROTOCOL } from '../../src/p2p/constants.js'
import { request } from '../../src/p2p/framing.js'
import { ErrorCode, Frame } from '../../src/gen/framing.pb.js'
import { PayRequest, PayResponse } from '../../src/gen/pay.pb.js'
import { RemoteError } from '../../src/errors.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { ClientRole } from '../../src/roles/client/client-role.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { NodeSettlement } from '../../src/settlement/node-settlement.js'
import type { Transaction } from '@ton/core'
import type { AddressInfo } from 'node:net'

interface PaidSwarm {
  devnet: Devnet
  boot: RunningNode
  proxy: RunningNode
  workers: RunningNode[]
  clients: RunningNode[]
}

// `required` is left at its default: with settlement on, jobs must be paid
const SETTLEMENT = {
  enabled: true,
  deposit: 2_000_000_000,
  creditWindow: 200_000,
  paymentWaitMs: 1_500,
  settleWaitMs: 2_000,
  watchIntervalMs: 3_600_000
}

function settled (n: RunningNode): NodeSettlement {
  if (n.settlement == null) throw new Error(`${n.config.role} runs without settlement`)
  return n.settlement
}

function synthetic (tuning: Record<string, number> = {}): Record<string, unknown> {
  return { worker: { backend: 'synthetic', synthetic: { chunks: 12, chunkBytes: 16, intervalMs: 0, firstChunkDelayMs: 0, ...tuning } } }
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

async function startPaidSwarm (devnet: Devnet, opts: { clients?: number, workers?: Array<Record<string, unknown>>, proxyDir?: string, proxyListen?: string[], settlement?: Record<string, unknown>, client?: Record<string, unknown> } = {}): Promise<PaidSwarm> {
  const settlement = { ...SETTLEMENT, ...opts.settlement }
  const boot = await startNode(testConfig('bootstrap', await tempDir()))
  const bootAddrs = boot.addrs()
  const proxy = await startNode(testConfig('proxy', opts.proxyDir ?? await tempDir(), bootAddrs, { settlement, ...(opts.proxyListen == null ? {} : { listen: opts.proxyListen }) }), { devnet })
  const workers = await Promise.all((opts.workers ?? [synthetic(), synthetic()]).map(async w => startNode(testConfig('worker', await tempDir(), bootAddrs, { ...w, settlement }), { devnet })))
  const clients = await Promise.all(Array.from({ length: opts.clients ?? 1 }, async () => startNode(testConfig('client', await tempDir(), bootAddrs, { ...opts.client, settlement }), { devnet })))
  const proxyRole = proxy.role as ProxyRole
  await waitFor(() => proxyRole.registry.list().filter(w => w.state === 'up').length === workers.length, 20_000, 'the proxy to attest every worker')
  for (const c of clients) await waitFor(() => (c.role as ClientRole).pool.known().length > 0, 20_000, 'each client to find the proxy')
  return { devnet, boot, proxy, workers, clients }
}

async function stopAll (nodes: Array<RunningNode | undefined>): Promise<void> {
  await Promise.all(nodes.map(async n => { await n?.stop() }))
}

function sdk (client: RunningNode): OpenAI {
  return new OpenAI({ baseURL: `${(client.role as ClientRole).apiUrl as string}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 })
}

interface Cost { paid: string, worker: string, commission: string, channel: string }

function costOf (res: unknown): { cost: Cost, worker: string } {
  const cocoon = (res as { cocoon: { cost_nanoton: Cost, worker: string } }).cocoon
  return { cost: cocoon.cost_nanoton, worker: cocoon.worker }
}

/**
 * What the channel's closing transaction paid to `to`: its first message
 * there (the payout; a caller other than the payer gets its unspent gas in a
 * second one).
 */
function payoutTo (devnet: Devnet, channel: string, to: string): bigint {
  const [tx]: Transaction[] = devnet.transactions(Address.parseRaw(channel), 1)
  const dest = Address.parseRaw(to)
  for (const key of [...tx.outMessages.keys()].sort((a, b) => a - b)) {
    const msg = tx.outMessages.get(key)
    if (msg?.info.type === 'internal' && msg.info.dest.equals(dest)) return msg.info.value.coins
  }
  return 0n
}

/** A refund is what was not spent, less the channel's fees (well under 0.02 TON), plus at most the gas money the payer attached to the close. */
function expectRefund (refund: bigint, unspent: bigint, attached: bigint): void {
  const fees = 20_000_000n
  expect(refund > unspent - fees && refund <= unspent + attached, `refund ${refund} for ${unspent} unspent`).to.equal(true)
}

describe('paid inference on the devnet', function () {
  this.timeout(120_000)

  after(cleanupTempDirs)

  it('3 clients x 20 requests: every channel closes cooperatively and the chain pays exactly what was used', async () => {
    const devnet = await Devnet.open(await tempDir())
    const s = await startPaidSwarm(devnet, { clients: 3 })
    try {
      const paidBy = new Map<string, bigint>()
      const earnedBy = new Map<string, bigint>()
      let commission = 0n
      await Promise.all(s.clients.map(async (client, i) => {
        const openai = sdk(client)
        for (let r = 0; r < 20; r++) {
          const stream = r % 2 === 0
          let res: unknown
          if (stream) {
            const chunks = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: `client ${i} request ${r}` }], stream: true, stream_options: { include_usage: true } })
            for await (const chunk of chunks) res = chunk.usage != null ? chunk : res
          } else {
            res = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: `client ${i} request ${r}` }] })
          }
          const { cost, worker } = costOf(res)
          expect(BigInt(cost.paid)).to.equal(BigInt(cost.worker) + BigInt(cost.commission))
          expect((res as { usage: { cost_nanoton: { client: string } } }).usage.cost_nanoton.client, 'the usage says what it cost').to.equal(cost.paid)
          paidBy.set(client.peerId.toString(), (paidBy.get(client.peerId.toString()) ?? 0n) + BigInt(cost.paid))
          earnedBy.set(worker, (earnedBy.get(worker) ?? 0n) + BigInt(cost.worker))
          commission += BigInt(cost.commission)
        }
      }))

      // the price list is what clients pay: the workers' price plus the commission
      const models = await sdk(s.clients[0]).models.list()
      const pricing = (models.data.find(m => m.id === 'cocoon-synthetic') as unknown as { pricing: { completion_per_m_nanoton: { min: string }, commission_bp: number } }).pricing
      expect(pricing.commission_bp).to.equal(1_000)
      expect(pricing.completion_per_m_nanoton.min).to.equal('88000000')

      // clients close their channels to the proxy
      let proxyReceived = 0n
      for (const client of s.clients) {
        const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
        const paid = paidBy.get(client.peerId.toString()) as bigint
        expect(settled(client).store.latestState(channel.address)?.cumulative, 'the channel carries every job paid').to.equal(paid)
        expect(await settled(client).closeChannel(channel.address)).to.equal('closed')
        const onChain = await settled(client).chain.getChannel(channel.address)
        expect(onChain?.status).to.equal('closed')
        expect(onChain?.cumulative).to.equal(paid)
        expect(payoutTo(devnet, channel.address, channel.payee), 'the proxy got exactly what the client paid').to.equal(paid)
        // the payer submitted the close: its refund also holds the unspent gas it attached
        expectRefund(payoutTo(devnet, channel.address, channel.payer), channel.deposited - paid, OPERATION_VALUE)
        proxyReceived += paid
      }
      // the proxy holds each worker's countersignature of its latest state (read
      // after each job's final payment, or got by re-sending it once the channel is quiet)
      for (const channel of settled(s.proxy).manager.list({ side: 'payer' })) {
        const store = settled(s.proxy).store
        await waitFor(() => store.latestBothSigned(channel.address)?.seqno === store.latestState(channel.address)?.seqno, 8_000, `the proxy to hold worker ${channel.peerId}'s countersignature of its latest state`)
      }
      // the proxy closes its channels to the workers
      let workersReceived = 0n
      for (const channel of settled(s.proxy).manager.list().filter(c => c.side === 'payer')) {
        const earned = earnedBy.get(channel.peerId) ?? 0n
        expect(await settled(s.proxy).closeChannel(channel.address)).to.equal('closed')
        expect(payoutTo(devnet, channel.address, channel.payee), `worker ${channel.peerId} got exactly its share`).to.equal(earned)
        workersReceived += earned
      }
      expect(workersReceived).to.equal([...earnedBy.values()].reduce((a, b) => a + b, 0n))
      expect(proxyReceived - workersReceived, 'the proxy kept the commission').to.equal(commission)
      expect(commission > 0n).to.equal(true)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('settles each of many concurrent jobs on one channel by its own last payment, without waiting for the others', async () => {
    const devnet = await Devnet.open(await tempDir())
    // a long settle wait: a job that waited for the whole channel to be paid up would take it
    const roomy = { worker: { ...(synthetic({ chunks: 30, intervalMs: 2 }).worker as Record<string, unknown>), models: [{ name: 'cocoon-synthetic', contextLength: 2048, pricePromptPerM: 20_000_000, priceCompletionPerM: 80_000_000, maxConcurrent: 16 }] } }
    const s = await startPaidSwarm(devnet, { workers: [roomy], settlement: { settleWaitMs: 20_000 } })
    try {
      const openai = sdk(s.clients[0])
      await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'open the channel' }] })
      const t0 = performance.now()
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        const stream = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: `concurrent ${i}` }], stream: true })
        for await (const _chunk of stream) { /* read to the end */ }
      }))
      const worker = s.workers[0].role as unknown as { work?: { status(): { running: Record<string, number> } } }
      await waitFor(() => Object.values(worker.work?.status().running ?? {}).every(n => n === 0), 5_000, 'the worker to free its slots')
      const ms = performance.now() - t0
      expect(ms, `8 concurrent paid jobs took ${Math.round(ms)} ms`).to.be.below(10_000)
      const [channel] = settled(s.clients[0]).manager.list().filter(c => c.side === 'payer')
      // the last settling payments land just after the answers (each is committed before it is sent)
      await waitFor(() => settled(s.proxy).manager.payee(channel.address)?.unpaid === 0n, 5_000, 'every job on the channel to be paid')
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('stops a client that stops paying within the credit window', async () => {
    const devnet = await Devnet.open(await tempDir())
    // 60 frames of 16 bytes, paced so each is its own frame; 88 nanoTON per token for the client
    const s = await startPaidSwarm(devnet, { workers: [synthetic({ chunks: 400, intervalMs: 5 })], settlement: { creditWindow: 2_000, paymentWaitMs: 500 } })
    try {
      const client = s.clients[0]
      const openai = sdk(client)
      // one paid job opens the channel
      await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'warm up' }], max_tokens: 5 })
      const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
      const payer = settled(client).manager.payer(channel.address)
      if (payer == null) throw new Error('no payer channel')
      const paidBefore = payer.paid
      // from now on the client signs nothing new: it only repeats its last state
      payer.owe = () => null
      payer.settle = () => null
      let received = 0
      const error = await (async () => {
        const stream = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'free lunch' }], stream: true })
        for await (const chunk of stream) if ((chunk.choices[0]?.delta?.content ?? '') !== '') received++
      })().then(() => undefined, (err: Error) => err)
      expect(error, 'the stream ends with an error').to.be.instanceOf(Error)
      expect((error as Error).message).to.match(/payment fell behind/)
      expect(received, 'the proxy stopped long before the end').to.be.below(400)
      const payee = settled(s.proxy).manager.payee(channel.address)
      expect(payee?.received).to.equal(paidBefore)
      expect((payee?.unpaid ?? 0n) <= 2_000n + 88n * 64n, `the proxy lost ${payee?.unpaid} nanoTON, at most about one window`).to.equal(true)
      // and says so in its metrics, per channel and peer
      const metrics = await s.proxy.metrics.registry.metrics()
      const line = metrics.split('\n').find(l => l.startsWith('cocoon_channel_nanoton{') && l.includes(`channel="${channel.address}"`) && l.includes('kind="unpaid"'))
      expect(line, 'an unpaid gauge for the channel').to.be.a('string')
      expect(line).to.contain(`peer="${client.peerId.toString()}"`)
      expect(Number(line?.split(' ').at(-1))).to.equal(Number(payee?.unpaid)).and.to.be.above(0)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('resumes the channel after the proxy is killed mid-stream and restarted, losing no signed state', async () => {
    const devnet = await Devnet.open(await tempDir())
    const proxyDir = await tempDir()
    const port = await freePort()
    const listen = [`/ip4/127.0.0.1/tcp/${port}`]
    // a small window: the client pays every dozen tokens or so, so states are signed mid-stream
    const settlement = { ...SETTLEMENT, creditWindow: 2_000 }
    const s = await startPaidSwarm(devnet, { proxyDir, proxyListen: listen, settlement, workers: [synthetic({ chunks: 200, intervalMs: 10 })] })
    let proxy2: RunningNode | undefined
    try {
      const client = s.clients[0]
      const openai = sdk(client)
      const stream = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'long' }], stream: true })
      let seen = 0
      const ended = (async () => {
        for await (const chunk of stream) {
          if ((chunk.choices[0]?.delta?.content ?? '') !== '') seen++
          if (seen === 20) {
            for (const c of s.proxy.node.getConnections()) c.abort(new Error('kill -9'))
            await s.proxy.stop()
          }
        }
      })().catch(err => err as Error)
      expect(await ended).to.be.instanceOf(Error)
      const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
      const clientLatest = settled(client).store.latestBothSigned(channel.address)
      expect(clientLatest, 'the client holds countersigned states').to.not.equal(undefined)

      // restarted on its address: the worker is found again through the DHT when the next job asks for it
      proxy2 = await startNode(testConfig('proxy', proxyDir, s.boot.addrs(), { settlement, listen }), { devnet })
      const proxyLatest = settled(proxy2).store.latestState(channel.address)
      expect((proxyLatest?.seqno ?? 0n) >= (clientLatest?.seqno ?? 0n), 'every state the proxy countersigned survived').to.equal(true)
      const res = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'again' }], max_tokens: 4 })
      const { cost } = costOf(res)
      expect(cost.channel, 'the same channel').to.equal(channel.address)
      // the answer can arrive before the job's last payment has landed at the proxy: give it a moment
      const agree = (): boolean => settled(proxy2!).store.latestState(channel.address)?.cumulative === settled(client).store.latestState(channel.address)?.cumulative
      await waitFor(agree, 5_000, 'the restarted proxy to hold the client\'s latest state').catch(() => {})
      expect(settled(proxy2).store.latestState(channel.address)?.cumulative).to.equal(settled(client).store.latestState(channel.address)?.cumulative)
    } finally {
      await stopAll([...s.clients, ...s.workers, proxy2, s.boot])
      await devnet.close()
    }
  })

  it('lets the client close alone and recover what it did not spend when the proxy vanishes', async () => {
    const devnet = await Devnet.open(await tempDir())
    const s = await startPaidSwarm(devnet)
    try {
      const client = s.clients[0]
      await sdk(client).chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'one' }] })
      await s.proxy.stop()
      const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
      const both = settled(client).store.latestBothSigned(channel.address)
      expect(await settled(client).closeChannel(channel.address, { force: true })).to.equal('closing')
      await devnet.advanceTime(channel.disputeWindowS)
      const done = await settled(client).watch()
      expect(done).to.deep.include({ channel: channel.address, action: 'finished' })
      const spent = both?.cumulative ?? 0n
      expect(payoutTo(devnet, channel.address, channel.payee)).to.equal(spent)
      expectRefund(payoutTo(devnet, channel.address, channel.payer), channel.deposited - spent, OPERATION_VALUE)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('tops a channel up before it runs dry, so a long run of jobs never stops', async () => {
    const devnet = await Devnet.open(await tempDir())
    // dear tokens and the smallest deposit: each job spends about a tenth of a channel
    const dear = { ...synthetic(), worker: { ...(synthetic().worker as Record<string, unknown>), models: [{ name: 'cocoon-synthetic', contextLength: 2048, pricePromptPerM: 0, priceCompletionPerM: 100_000_000_000, maxConcurrent: 4 }] } }
    const s = await startPaidSwarm(devnet, { workers: [dear], settlement: { deposit: 20_000_000, creditWindow: 10_000_000 }, client: { client: { maxPriceCompletionPerM: 1_000_000_000_000 } } })
    try {
      const client = s.clients[0]
      const openai = sdk(client)
      let paid = 0n
      for (let i = 0; i < 20; i++) {
        const res = await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: `job ${i}` }] })
        paid += BigInt(costOf(res).cost.paid)
        if (i === 5) await waitFor(() => (settled(client).manager.list()[0]?.deposited ?? 0n) > 20_000_000n, 10_000, 'the top-up to land')
      }
      const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
      expect(paid > 20_000_000n, `the jobs cost ${paid} nanoTON, more than the first deposit`).to.equal(true)
      expect(channel.deposited > paid, 'topped up in time').to.equal(true)
      const onChain = await settled(client).chain.getChannel(channel.address)
      expect(onChain?.deposited).to.equal(channel.deposited)
      expect(settled(s.proxy).manager.payee(channel.address)?.record.deposited, 'the proxy was told').to.equal(channel.deposited)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('refuses malformed, oversized and forged /cocoon/pay requests, foreign channels and jobs that name no channel, and keeps serving', async () => {
    const devnet = await Devnet.open(await tempDir())
    const s = await startPaidSwarm(devnet, { clients: 2 })
    try {
      const [alice, mallory] = s.clients
      await sdk(alice).chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'hello' }] })
      const [channel] = settled(alice).manager.list().filter(c => c.side === 'payer')
      const ask = async (message: Partial<PayRequest>): Promise<unknown> => request(mallory.node, s.proxy.peerId, PAY_PROTOCOL, { request: PayRequest, response: PayResponse }, message, { maxFrameBytes: PAY_MAX_FRAME_BYTES }).then(() => undefined, (e: unknown) => e)
      const refused = (e: unknown): string => { expect(e).to.be.instanceOf(RemoteError); return (e as RemoteError).remoteCode }

      // garbage and oversized frames
      const raw = await mallory.node.dialProtocol(s.proxy.peerId, PAY_PROTOCOL)
      const lp = lpStream(raw)
      await lp.write(new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]))
      expect(Frame.decode(await lp.read({ signal: AbortSignal.timeout(5_000) })).error?.code).to.equal(ErrorCode.BAD_REQUEST)
      const big = await mallory.node.dialProtocol(s.proxy.peerId, PAY_PROTOCOL)
      const bigLp = lpStream(big)
      big.send(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f]))
      expect(Frame.decode(await bigLp.read({ signal: AbortSignal.timeout(5_000) })).error?.code).to.equal(ErrorCode.TOO_LARGE)
      big.abort(new Error('done'))

      // another client's channel: not Mallory's to sync, top up, close or open again
      const forged = { channel: channel.address, seqno: 99n, cumulative: 1_000_000n, payerSignature: new Uint8Array(64).fill(7), payeeSignature: new Uint8Array(0) }
      expect(refused(await ask({ sync: { channel: channel.address, latest: forged } }))).to.equal(ErrorCode.PAYMENT_REFUSED)
      expect(refused(await ask({ close: { channel: channel.address, seqno: 99n, cumulative: 1n, payerSignature: new Uint8Array(64) } }))).to.equal(ErrorCode.PAYMENT_REFUSED)
      expect(refused(await ask({ open: { channel: channel.address, channelId: channel.channelId, payerKey: new Uint8Array(channel.payerKey), payerWallet: channel.payer, disputeWindowS: channel.disputeWindowS } }))).to.equal(ErrorCode.PAYMENT_REFUSED)
      // a channel that is not ours at all
      expect(refused(await ask({ open: { channel: '0:' + '12'.repeat(32), channelId: 1n, payerKey: new Uint8Array(32), payerWallet: channel.payer, disputeWindowS: 86_400 } }))).to.equal(ErrorCode.PAYMENT_REFUSED)
      expect(refused(await ask({ open: { channel: 'not an address', channelId: 1n, payerKey: new Uint8Array(3), payerWallet: 'x', disputeWindowS: 1 } }))).to.equal(ErrorCode.PAYMENT_REFUSED)

      // Alice's own sync with a forged newer state: refused, nothing stored
      const before = settled(s.proxy).store.latestState(channel.address)
      const aliceSync = await request(alice.node, s.proxy.peerId, PAY_PROTOCOL, { request: PayRequest, response: PayResponse }, { sync: { channel: channel.address, latest: forged } }, { maxFrameBytes: PAY_MAX_FRAME_BYTES }).then(() => undefined, (e: unknown) => e)
      expect(refused(aliceSync)).to.equal(ErrorCode.PAYMENT_REFUSED)
      expect(settled(s.proxy).store.latestState(channel.address)).to.deep.equal(before)

      // a job naming Alice's channel from Mallory: 402, and the proxy still serves everyone
      const jobClient = (mallory.role as ClientRole).jobs as unknown as { payerFor: (p: string, sig: AbortSignal) => Promise<unknown> }
      const own = jobClient.payerFor.bind(jobClient)
      jobClient.payerFor = async () => settled(alice).manager.payer(channel.address) as unknown
      const stolen = await sdk(mallory).chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'on her tab' }] }).then(() => undefined, (e: unknown) => e)
      jobClient.payerFor = own
      expect((stolen as { status?: number }).status).to.equal(402)
      expect(s.proxy.node.status).to.equal('started')

      // a client that runs without settlement (names no channel): 402 from the proxy before any worker is engaged
      const served = (): number => s.workers.reduce((n, w) => {
        const jobs = (w.role.status() as { jobs: { completed: number, failed: number, cancelled: number } | null }).jobs
        return n + (jobs == null ? 0 : jobs.completed + jobs.failed + jobs.cancelled)
      }, 0)
      const before402 = served()
      const freeloader = await startNode(testConfig('client', await tempDir(), s.boot.addrs()))
      try {
        await waitFor(() => (freeloader.role as ClientRole).pool.known().length > 0, 20_000, 'the unpaid client to find the proxy')
        const free = await sdk(freeloader).chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'for free?' }] }).then(() => undefined, (e: unknown) => e)
        expect((free as { status?: number }).status, 'a job naming no channel').to.equal(402)
        expect(String((free as Error).message)).to.contain('paid jobs only')
        expect(served(), 'no worker saw the unpaid job').to.equal(before402)
      } finally {
        await freeloader.stop()
      }
      const ok = await sdk(alice).chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'still there?' }] })
      expect(costOf(ok).cost.channel).to.equal(channel.address)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })

  it('answers a payer closing alone with an older state by challenging with the newer one', async () => {
    const devnet = await Devnet.open(await tempDir())
    const s = await startPaidSwarm(devnet)
    try {
      const client = s.clients[0]
      const openai = sdk(client)
      await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'first' }] })
      const [channel] = settled(client).manager.list().filter(c => c.side === 'payer')
      // the countersignature of the final payment follows the answer
      await waitFor(() => settled(client).store.latestBothSigned(channel.address)?.seqno === settled(client).store.latestState(channel.address)?.seqno, 5_000, 'the final countersignature')
      const old = settled(client).store.latestBothSigned(channel.address)
      if (old == null) throw new Error('no both-signed state')
      await openai.chat.completions.create({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'second' }] })
      const newer = settled(s.proxy).store.latestBothSigned(channel.address)
      expect((newer?.seqno ?? 0n) > old.seqno).to.equal(true)
      // the client cheats: closes with the older state
      await settled(client).chain.startClose(channel.address, toContractState(old))
      const actions = await settled(s.proxy).watch()
      expect(actions).to.deep.include({ channel: channel.address, action: 'challenged' })
      await devnet.advanceTime(channel.disputeWindowS)
      expect(await settled(s.proxy).watch()).to.deep.include({ channel: channel.address, action: 'finished' })
      expect(payoutTo(devnet, channel.address, channel.payee), 'the proxy loses nothing').to.equal(newer?.cumulative)
    } finally {
      await stopAll([...s.clients, ...s.workers, s.proxy, s.boot])
      await devnet.close()
    }
  })
})

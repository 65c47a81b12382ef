/**
 * Payment-channel costs. Prints and writes bench/results/payments.json:
 *
 * - state updates per second, signed and persisted: the payer signs a state
 *   and stores it durably, the payee verifies, countersigns and stores it,
 *   the payer verifies the countersignature and stores it (two SQLite files,
 *   synchronous = FULL, as the nodes run them);
 * - the latency that round adds per paid chunk (p50 / p99), against two
 *   baselines from the same run: the ed25519 work alone, and one durable write
 *   alone;
 * - on-chain fees per channel lifetime on the TON emulator: open + cooperative
 *   close, open + close alone, and open + close alone + challenge;
 * - what paying adds to a whole job: the same swarm (client, proxy, worker in
 *   one process; 50 chunks of 128 bytes) answering requests one after
 *   another unpaid, paid with the default credit window (one state per job),
 *   and paid with a tight window (a state every few tokens).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { Blockchain } from '@ton/sandbox'
import { fromNano, toNano } from '@ton/core'
import { PaymentChannel } from '../contracts/payment-channel.js'
import { ChannelKey, verifySignature } from '../src/settlement/channel-key.js'
import { signState, stateDigest } from '../src/settlement/channel-state.js'
import { PayeeChannel, PayerChannel } from '../src/settlement/channels.js'
import { openChannelStore } from '../src/settlement/store.js'
import { Devnet } from '../src/settlement/chain/index.js'
import { startNode } from '../src/roles/runtime.js'
import { testConfig, waitFor } from '../test/helpers.js'
import type { ClientRole } from '../src/roles/client/client-role.js'
import type { ProxyRole } from '../src/roles/proxy/proxy-role.js'
import type { RunningNode } from '../src/roles/runtime.js'
import { median, quantile, round, settle, writeResult } from './stats.js'
import type { ChannelRecord } from '../src/settlement/types.js'
import type { SendMessageResult } from '@ton/sandbox'


const { values } = parseArgs({ options: { updates: { type: 'string', default: '3000' }, jobs: { type: 'string', default: '150' } } })
const UPDATES = Number(values.updates)
const JOBS = Number(values.jobs)

function record (address: string, side: 'payer' | 'payee', payerKey: ChannelKey, payeeKey: ChannelKey): ChannelRecord {
  return {
    address,
    side,
    peerId: side === 'payer' ? 'payee-peer' : 'payer-peer',
    networkId: -239,
    channelId: 1n,
    disputeWindowS: 3600,
    payerKey: payerKey.publicKey,
    payeeKey: payeeKey.publicKey,
    payer: '0:' + '11'.repeat(32),
    payee: '0:' + '22'.repeat(32),
    deposited: toNano('1000'),
    status: 'open',
    createdAtMs: Date.now(),
    updatedAtMs: Date.now()
  }
}

function summary (ms: number[]): { p50: number, p99: number } {
  return { p50: round(median(ms), 4), p99: round(quantile(ms, 0.99), 4) }
}

async function offChain (): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'cocoon-bench-pay-'))
  try {
    const payerKey = ChannelKey.generate()
    const payeeKey = ChannelKey.generate()
    const address = '0:' + 'ab'.repeat(32)
    const payerStore = openChannelStore(join(dir, 'payer', 'channels.sqlite'))
    const payeeStore = openChannelStore(join(dir, 'payee', 'channels.sqlite'))
    payerStore.putChannel(record(address, 'payer', payerKey, payeeKey))
    payeeStore.putChannel(record(address, 'payee', payerKey, payeeKey))
    const payer = new PayerChannel(record(address, 'payer', payerKey, payeeKey), payerStore, payerKey)
    const payee = new PayeeChannel(record(address, 'payee', payerKey, payeeKey), payeeStore, payeeKey)

    // baseline 1: the ed25519 work of one round (two signatures, two checks), nothing stored
    const rec = payer.record
    const crypto: number[] = []
    for (let i = 1; i <= UPDATES; i++) {
      const state = { channel: address, seqno: BigInt(i), cumulative: BigInt(i) * 1000n }
      const t0 = performance.now()
      const digest = stateDigest(rec, state)
      const a = payerKey.sign(digest)
      verifySignature(payerKey.publicKey, stateDigest(rec, state), a)
      const b = signState(payeeKey, rec, state)
      verifySignature(payeeKey.publicKey, digest, b)
      crypto.push(performance.now() - t0)
    }

    // baseline 2: one durable write, no cryptography (a third file)
    const plainStore = openChannelStore(join(dir, 'plain', 'channels.sqlite'))
    plainStore.putChannel(record(address, 'payer', payerKey, payeeKey))
    const sig = Buffer.alloc(64, 1)
    const writes: number[] = []
    for (let i = 1; i <= UPDATES; i++) {
      const t0 = performance.now()
      plainStore.saveState({ channel: address, seqno: BigInt(i), cumulative: BigInt(i), payerSignature: sig, payeeSignature: sig, savedAtMs: Date.now() })
      writes.push(performance.now() - t0)
    }
    plainStore.close()

    await settle()
    // the real round: what a paid chunk costs both ends
    const rounds: number[] = []
    const started = performance.now()
    for (let i = 1; i <= UPDATES; i++) {
      const t0 = performance.now()
      const update = payer.payUpTo(BigInt(i) * 1000n)
      const countersignature = payee.accept(update)
      payer.countersigned(update.seqno, countersignature)
      rounds.push(performance.now() - t0)
    }
    const seconds = (performance.now() - started) / 1000
    const latest = payerStore.latestBothSigned(address)
    if (latest?.seqno !== BigInt(UPDATES)) throw new Error(`the payer stored seqno ${String(latest?.seqno)}, expected ${UPDATES}`)
    payerStore.close()
    payeeStore.close()
    return {
      updates: UPDATES,
      updatesPerSecond: round(UPDATES / seconds, 1),
      roundMs: summary(rounds),
      baselineCryptoMs: summary(crypto),
      baselineOneDurableWriteMs: summary(writes),
      durableWritesPerRound: 3
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function onChain (): Promise<Record<string, string>> {
  const fees = async (path: 'cooperative' | 'alone' | 'challenged'): Promise<bigint> => {
    const chain = await Blockchain.create()
    const start = Math.floor(Date.now() / 1000)
    chain.now = start
    const payer = await chain.treasury('payer')
    const payee = await chain.treasury('payee')
    const payerKey = ChannelKey.generate()
    const payeeKey = ChannelKey.generate()
    const channel = chain.openContract(PaymentChannel.createFromConfig({
      networkId: -239, channelId: 1n, disputeWindowS: 3600, payerKey: Buffer.from(payerKey.publicKey), payeeKey: Buffer.from(payeeKey.publicKey), payer: payer.address, payee: payee.address
    }))
    const rec = { address: channel.address.toRawString(), networkId: -239, channelId: 1n }
    const signed = (seqno: bigint, cumulative: bigint, tag: 'state' | 'cooperative' = 'state'): { seqno: bigint, cumulative: bigint, payerSignature: Buffer, payeeSignature: Buffer } => {
      const state = { channel: rec.address, seqno, cumulative }
      return { seqno, cumulative, payerSignature: signState(payerKey, rec, state, tag), payeeSignature: signState(payeeKey, rec, state, tag) }
    }
    const results: SendMessageResult[] = [await channel.sendDeploy(payer.getSender(), toNano('10'))]
    if (path === 'cooperative') {
      results.push(await channel.sendCooperativeClose(payer.getSender(), signed(100n, toNano('3'), 'cooperative')))
    } else {
      results.push(await channel.sendStartClose(payer.getSender(), signed(50n, toNano('1'))))
      if (path === 'challenged') results.push(await channel.sendChallenge(payee.getSender(), signed(100n, toNano('3'))))
      chain.now = start + 3600
      results.push(await channel.sendFinishClose(payee.getSender()))
    }
    for (const r of results) {
      for (const tx of r.transactions) {
        if (tx.description.type === 'generic' && tx.description.aborted) throw new Error(`a ${path} lifetime transaction failed`)
      }
    }
    return results.reduce((sum, r) => sum + r.transactions.reduce((s, t) => s + t.totalFees.coins, 0n), 0n)
  }
  return {
    cooperativeTon: fromNano(await fees('cooperative')),
    closedAloneTon: fromNano(await fees('alone')),
    closedAloneAndChallengedTon: fromNano(await fees('challenged'))
  }
}

/** Median and p99 of whole-job latency, `JOBS` requests one after another, with settlement as given. */
async function jobLatency (settlement: Record<string, unknown> | null): Promise<{ p50: number, p99: number, statesSigned: number }> {
  const root = await mkdtemp(join(tmpdir(), 'cocoon-bench-jobs-'))
  const devnet = settlement == null ? undefined : await Devnet.open(join(root, 'chain'))
  const nodes: RunningNode[] = []
  try {
    const s = settlement == null ? {} : { settlement: { enabled: true, ...settlement } }
    const boot = await startNode(testConfig('bootstrap', join(root, 'b')))
    nodes.push(boot)
    const proxy = await startNode(testConfig('proxy', join(root, 'p'), boot.addrs(), s), { devnet })
    const worker = await startNode(testConfig('worker', join(root, 'w'), boot.addrs(), { ...s, worker: { backend: 'synthetic', synthetic: { chunks: 50, chunkBytes: 128, intervalMs: 0, firstChunkDelayMs: 0 } } }), { devnet })
    const client = await startNode(testConfig('client', join(root, 'c'), boot.addrs(), s), { devnet })
    nodes.push(proxy, worker, client)
    await waitFor(() => (proxy.role as ProxyRole).registry.list().some(w => w.state === 'up'), 20_000, 'the proxy to attest the worker')
    await waitFor(() => (client.role as ClientRole).pool.known().length > 0, 20_000, 'the client to find the proxy')
    const url = `${(client.role as ClientRole).apiUrl as string}/v1/chat/completions`
    const ask = async (): Promise<void> => {
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'bench' }] }) })
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
      await res.json()
    }
    for (let i = 0; i < 5; i++) await ask() // opens the channels, warms up
    await settle()
    const ms: number[] = []
    for (let i = 0; i < JOBS; i++) {
      const t0 = performance.now()
      await ask()
      ms.push(performance.now() - t0)
    }
    const states = client.settlement?.store.listChannels().reduce((n, c) => n + Number(client.settlement?.store.latestState(c.address)?.seqno ?? 0n), 0) ?? 0
    return { ...summary(ms), statesSigned: states }
  } finally {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await devnet?.close()
    await rm(root, { recursive: true, force: true })
  }
}

console.log(`payments: ${UPDATES} state updates between two durable stores; on-chain fees on the TON emulator`)
const off = await offChain()
const round_ = off.roundMs as { p50: number, p99: number }
const cryptoMs = off.baselineCryptoMs as { p50: number, p99: number }
const writeMs = off.baselineOneDurableWriteMs as { p50: number, p99: number }
console.log(`  signed and persisted state updates: ${String(off.updatesPerSecond)} per second (each: 2 signatures, 2 checks, 3 durable writes)`)
console.log(`  one payment round (payer signs + stores, payee checks + countersigns + stores, payer checks + stores): p50 ${round_.p50} ms, p99 ${round_.p99} ms`)
console.log(`  baselines: ed25519 work alone p50 ${cryptoMs.p50} ms; one durable write alone p50 ${writeMs.p50} ms (p99 ${writeMs.p99})`)
const fees = await onChain()
console.log(`  on-chain fees per channel lifetime: ${fees.cooperativeTon} TON cooperative, ${fees.closedAloneTon} TON closed alone, ${fees.closedAloneAndChallengedTon} TON with a challenge`)
const unpaid = await jobLatency(null)
const paid = await jobLatency({})
const tight = await jobLatency({ creditWindow: 1_000 })
console.log(`  whole job (50 chunks, ${JOBS} requests one after another, client+proxy+worker in one process), p50 / p99:`)
console.log(`    unpaid                            ${unpaid.p50} / ${unpaid.p99} ms`)
console.log(`    paid, default credit window       ${paid.p50} / ${paid.p99} ms  (${round(paid.p50 / unpaid.p50, 2)}x; ${paid.statesSigned} client states for ${JOBS + 5} jobs)`)
console.log(`    paid, 1000 nanoTON credit window  ${tight.p50} / ${tight.p99} ms  (${round(tight.p50 / unpaid.p50, 2)}x; ${tight.statesSigned} client states for ${JOBS + 5} jobs)`)
await writeResult('payments', { offChain: off, onChainFeesPerLifetime: fees, jobLatencyMs: { unpaid, paidDefaultWindow: paid, paidTightWindow: tight, jobs: JOBS }, node: process.version })

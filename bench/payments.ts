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
 *   close, open + close alone, and open + close alone + challenge.
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
import { median, quantile, round, settle, writeResult } from './stats.js'
import type { ChannelRecord } from '../src/settlement/types.js'
import type { SendMessageResult } from '@ton/sandbox'

const { values } = parseArgs({ options: { updates: { type: 'string', default: '3000' } } })
const UPDATES = Number(values.updates)

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
      networkId: -239, channelId: 1n, disputeWindowS: 3600, payerKey: payerKey.publicKey, payeeKey: payeeKey.publicKey, payer: payer.address, payee: payee.address
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

console.log(`payments: ${UPDATES} state updates between two durable stores; on-chain fees on the TON emulator`)
const off = await offChain()
const round_ = off.roundMs as { p50: number, p99: number }
const cryptoMs = off.baselineCryptoMs as { p50: number, p99: number }
const writeMs = off.baselineOneDurableWriteMs as { p50: number, p99: number }
console.log(`  signed and persisted state updates: ${String(off.updatesPerSecond)} per second (each: 2 signatures, 2 checks, 3 durable writes)`)
console.log(`  latency added per paid chunk: p50 ${round_.p50} ms, p99 ${round_.p99} ms`)
console.log(`  baselines: ed25519 work alone p50 ${cryptoMs.p50} ms; one durable write alone p50 ${writeMs.p50} ms (p99 ${writeMs.p99})`)
const fees = await onChain()
console.log(`  on-chain fees per channel lifetime: ${fees.cooperativeTon} TON cooperative, ${fees.closedAloneTon} TON closed alone, ${fees.closedAloneAndChallengedTon} TON with a challenge`)
await writeResult('payments', { offChain: off, onChainFeesPerLifetime: fees, node: process.version })

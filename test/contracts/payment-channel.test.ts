/**
 * The payment-channel contract on the real TVM (@ton/sandbox): every opcode,
 * every exit code, replays, states for another channel or network, bad
 * signatures, closing twice, the dispute window's edges, and the fees each
 * operation costs (written to bench/results/contract-fees.json).
 */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import { Blockchain, internal } from '@ton/sandbox'
import { beginCell, fromNano, toNano } from '@ton/core'
import { keyPairFromSeed, sign } from '@ton/crypto'
import { flattenTransaction } from '@ton/test-utils'
import {
  ChannelExitCodes, CLOSE_RESERVE, OPERATION_VALUE, PaymentChannel, stateToSign
} from '../../contracts/payment-channel.js'
import { ChannelKey } from '../../src/settlement/channel-key.js'
import { signState } from '../../src/settlement/channel-state.js'
import type { FlatTransaction } from '@ton/test-utils'
import type { KeyPair } from '@ton/crypto'
import type { SandboxContract, SendMessageResult, TreasuryContract } from '@ton/sandbox'
import type { Address } from '@ton/core'
import type { SignatureTag, SignedChannelState } from '../../contracts/payment-channel.js'

const NETWORK_ID = -239
const WINDOW_S = 3_600
const START_TIME = 1_800_000_000
const FUNDING = toNano('10')

interface World {
  chain: Blockchain
  payer: SandboxContract<TreasuryContract>
  payee: SandboxContract<TreasuryContract>
  stranger: SandboxContract<TreasuryContract>
  payerKeys: KeyPair
  payeeKeys: KeyPair
  channel: SandboxContract<PaymentChannel>
  deploy: SendMessageResult
}

async function world (opts: { channelId?: bigint, networkId?: number, funding?: bigint, payerSeed?: Buffer, payeeSeed?: Buffer } = {}): Promise<World> {
  const chain = await Blockchain.create()
  chain.now = START_TIME
  const payer = await chain.treasury('payer')
  const payee = await chain.treasury('payee')
  const stranger = await chain.treasury('stranger')
  const payerKeys = keyPairFromSeed(opts.payerSeed ?? randomBytes(32))
  const payeeKeys = keyPairFromSeed(opts.payeeSeed ?? randomBytes(32))
  const channel = chain.openContract(PaymentChannel.createFromConfig({
    networkId: opts.networkId ?? NETWORK_ID,
    channelId: opts.channelId ?? 1n,
    disputeWindowS: WINDOW_S,
    payerKey: payerKeys.publicKey,
    payeeKey: payeeKeys.publicKey,
    payer: payer.address,
    payee: payee.address
  }))
  const deploy = await channel.sendDeploy(payer.getSender(), opts.funding ?? FUNDING)
  return { chain, payer, payee, stranger, payerKeys, payeeKeys, channel, deploy }
}

/** A state signed by both parties for `tag`, for this channel unless told otherwise. */
function signed (w: World, seqno: bigint, cumulative: bigint, over: { tag?: SignatureTag, address?: Address, networkId?: number, channelId?: bigint, payerKeys?: KeyPair, payeeKeys?: KeyPair } = {}): SignedChannelState {
  const hash = stateToSign(over.tag ?? 'state', {
    address: over.address ?? w.channel.address,
    networkId: over.networkId ?? NETWORK_ID,
    channelId: over.channelId ?? 1n
  }, { seqno, cumulative }).hash()
  return {
    seqno,
    cumulative,
    payerSignature: sign(hash, (over.payerKeys ?? w.payerKeys).secretKey),
    payeeSignature: sign(hash, (over.payeeKeys ?? w.payeeKeys).secretKey)
  }
}

/** The transaction the contract ran for this result's first message to it. */
function onChannel (w: World, result: SendMessageResult): FlatTransaction {
  const tx = result.transactions.map(flattenTransaction).find(t => t.on?.equals(w.channel.address) === true)
  if (tx == null) throw new Error('no transaction on the channel')
  return tx
}

function expectExit (w: World, result: SendMessageResult, code: number): void {
  const tx = onChannel(w, result)
  expect(tx.aborted, `expected exit code ${code}, got a successful transaction`).to.equal(true)
  expect(tx.exitCode).to.equal(code)
  // the failed message bounces back to its sender with the value less fees
  const bounce = result.transactions.map(flattenTransaction).find(t => t.inMessageBounced === true)
  expect(bounce, 'the refused message bounced back').to.not.equal(undefined)
}

/** What each address received in this result (sum of incoming message values). */
function received (result: SendMessageResult, address: Address): bigint {
  return result.transactions.map(flattenTransaction)
    .filter(t => t.on?.equals(address) === true && t.inMessageBounced !== true)
    .reduce((sum, t) => sum + (t.value ?? 0n), 0n)
}

/** lo <= value <= hi, for nanoTON amounts (chai's within takes numbers only) */
function within (value: bigint, lo: bigint, hi: bigint, what = 'amount'): void {
  expect(value >= lo && value <= hi, `${what} ${value} not within [${lo}, ${hi}]`).to.equal(true)
}

function below (value: bigint, limit: bigint, what: string): void {
  expect(value < limit, `${what}: ${value} not below ${limit}`).to.equal(true)
}

const fees: Record<string, { gasUsed: number, totalFeesNanoTon: string, totalFeesTon: string }> = {}
function recordFee (name: string, w: World, result: SendMessageResult): void {
  const tx = result.transactions.find(t => flattenTransaction(t).on?.equals(w.channel.address) === true)
  if (tx == null) throw new Error(`no transaction for ${name}`)
  const d = tx.description
  const gasUsed = d.type === 'generic' && d.computePhase.type === 'vm' ? Number(d.computePhase.gasUsed) : 0
  // everything the operation cost: the channel's own fees plus the forwarding of its payouts
  const total = result.transactions.reduce((sum, t) => sum + t.totalFees.coins, 0n)
  fees[name] = { gasUsed, totalFeesNanoTon: total.toString(), totalFeesTon: fromNano(total) }
}

describe('payment-channel contract (sandbox)', function () {
  this.timeout(30_000)

  after(async () => {
    const dir = join(process.cwd(), 'bench', 'results')
    await mkdir(dir, { recursive: true })
    const sum = (...names: string[]): string | null => names.every(n => fees[n] != null) ? names.reduce((t, n) => t + BigInt(fees[n].totalFeesNanoTon), 0n).toString() : null
    const lifetimes = {
      cooperative: sum('deploy and fund', 'cooperative close'),
      unilateral: sum('deploy and fund', 'start close', 'finish close'),
      disputed: sum('deploy and fund', 'start close', 'challenge', 'finish close')
    }
    await writeFile(join(dir, 'contract-fees.json'), JSON.stringify({
      note: 'gas and fees per channel operation on @ton/sandbox, in nanoTON: every transaction of the operation (sender wallet, channel, payouts)',
      operations: fees,
      lifetimeNanoTon: lifetimes
    }, null, 2) + '\n')
  })

  it('deploys funded by the payer, takes top-ups from the payer only, and reports its state', async () => {
    const w = await world()
    expect(onChannel(w, w.deploy).deploy).to.equal(true)
    expect(onChannel(w, w.deploy).aborted).to.equal(false)
    recordFee('deploy and fund', w, w.deploy)
    let info = await w.channel.getChannel()
    expect(info).to.include({ status: 'open', networkId: NETWORK_ID, channelId: 1n, disputeWindowS: WINDOW_S, deposited: FUNDING, seqno: 0n, cumulative: 0n, closingSince: 0 })
    expect(info.payer.equals(w.payer.address)).to.equal(true)
    expect(info.payee.equals(w.payee.address)).to.equal(true)
    expect(info.payerKey.equals(w.payerKeys.publicKey)).to.equal(true)
    expect(info.payeeKey.equals(w.payeeKeys.publicKey)).to.equal(true)
    within(info.balance, FUNDING - toNano('0.01'), FUNDING)
    expect(await w.channel.getClosesAt()).to.equal(0)

    const topUp = await w.channel.sendTopUp(w.payer.getSender(), toNano('2'))
    expect(onChannel(w, topUp).aborted).to.equal(false)
    recordFee('top up', w, topUp)
    info = await w.channel.getChannel()
    expect(info.deposited).to.equal(FUNDING + toNano('2'))

    const before = await w.stranger.getBalance()
    const foreign = await w.channel.sendTopUp(w.stranger.getSender(), toNano('1'))
    expectExit(w, foreign, ChannelExitCodes.notPayer)
    expect((await w.channel.getChannel()).deposited).to.equal(FUNDING + toNano('2'))
    below(before - await w.stranger.getBalance(), toNano('0.01'), 'the stranger got its top-up back less fees')
  })

  it('closes cooperatively at once: the payee gets exactly what the final state says, the payer the rest', async () => {
    const w = await world()
    const owed = toNano('3.25')
    const payerBefore = await w.payer.getBalance()
    const result = await w.channel.sendCooperativeClose(w.payee.getSender(), signed(w, 7n, owed, { tag: 'cooperative' }))
    expect(onChannel(w, result).aborted).to.equal(false)
    recordFee('cooperative close', w, result)
    const payeeTx = result.transactions.map(flattenTransaction).filter(t => t.on?.equals(w.payee.address) === true && t.from?.equals(w.channel.address) === true)
    expect(payeeTx.map(t => t.value), 'the payout and the caller\'s unspent gas').to.have.length(2)
    expect(payeeTx[0].value).to.equal(owed)
    within(payeeTx[1].value ?? 0n, 1n, OPERATION_VALUE)
    const refund = received(result, w.payer.address)
    within(refund, FUNDING - owed - toNano('0.02'), FUNDING - owed)
    within((await w.payer.getBalance()) - payerBefore, refund - toNano('0.001'), refund, 'the payer\'s balance grew by the refund less its wallet\'s fee')
    const info = await w.channel.getChannel()
    expect(info).to.include({ status: 'closed', seqno: 7n, cumulative: owed })
    expect(info.balance).to.equal(0n)

    // closing twice
    expectExit(w, await w.channel.sendCooperativeClose(w.payee.getSender(), signed(w, 8n, owed, { tag: 'cooperative' })), ChannelExitCodes.closed)
    expectExit(w, await w.channel.sendStartClose(w.payer.getSender(), null), ChannelExitCodes.closed)
    expectExit(w, await w.channel.sendTopUp(w.payer.getSender(), toNano('1')), ChannelExitCodes.closed)
  })

  it('refuses a cooperative close signed as an ordinary state, by the wrong keys, for another channel or network', async () => {
    const w = await world()
    const other = await world({ channelId: 2n })
    const cases: Array<[string, SignedChannelState, number]> = [
      ['ordinary state tag', signed(w, 1n, toNano('1'), { tag: 'state' }), ChannelExitCodes.badPayerSignature],
      ['payer key of someone else', signed(w, 1n, toNano('1'), { tag: 'cooperative', payerKeys: w.payeeKeys }), ChannelExitCodes.badPayerSignature],
      ['payee key of someone else', signed(w, 1n, toNano('1'), { tag: 'cooperative', payeeKeys: w.payerKeys }), ChannelExitCodes.badPayeeSignature],
      ['another channel\'s address', signed(w, 1n, toNano('1'), { tag: 'cooperative', address: other.channel.address }), ChannelExitCodes.badPayerSignature],
      ['another channel id', signed(w, 1n, toNano('1'), { tag: 'cooperative', channelId: 2n }), ChannelExitCodes.badPayerSignature],
      ['another network', signed(w, 1n, toNano('1'), { tag: 'cooperative', networkId: -3 }), ChannelExitCodes.badPayerSignature]
    ]
    for (const [name, state, code] of cases) {
      const result = await w.channel.sendCooperativeClose(w.payee.getSender(), state)
      expect(onChannel(w, result).exitCode, name).to.equal(code)
    }
    // a tampered amount breaks both signatures
    const honest = signed(w, 1n, toNano('1'), { tag: 'cooperative' })
    expectExit(w, await w.channel.sendCooperativeClose(w.payee.getSender(), { ...honest, cumulative: toNano('2') }), ChannelExitCodes.badPayerSignature)
    expect((await w.channel.getChannel()).status).to.equal('open')
  })

  it('refuses a state that owes more than the channel holds, less the close reserve', async () => {
    const w = await world()
    const { balance } = await w.channel.getChannel()
    expectExit(w, await w.channel.sendCooperativeClose(w.payee.getSender(), signed(w, 1n, balance, { tag: 'cooperative' })), ChannelExitCodes.overspent)
    expectExit(w, await w.channel.sendStartClose(w.payee.getSender(), signed(w, 1n, balance)), ChannelExitCodes.overspent)
    const most = balance - CLOSE_RESERVE
    const ok = await w.channel.sendCooperativeClose(w.payee.getSender(), signed(w, 1n, most, { tag: 'cooperative' }))
    expect(onChannel(w, ok).aborted).to.equal(false)
    within(received(ok, w.payee.address), most, most + OPERATION_VALUE)
  })

  it('closes alone: the window opens, FinishClose waits for its end to the second, then anyone finishes it', async () => {
    const w = await world()
    const owed = toNano('4')
    const start = await w.channel.sendStartClose(w.payee.getSender(), signed(w, 5n, owed))
    expect(onChannel(w, start).aborted).to.equal(false)
    recordFee('start close', w, start)
    within(received(start, w.payee.address), OPERATION_VALUE - toNano('0.01'), OPERATION_VALUE, 'the unspent value of StartClose back to the payee')
    expect(await w.channel.getChannel()).to.include({ status: 'closing', seqno: 5n, cumulative: owed, closingSince: START_TIME })
    expect(await w.channel.getClosesAt()).to.equal(START_TIME + WINDOW_S)

    w.chain.now = START_TIME + WINDOW_S - 1
    expectExit(w, await w.channel.sendFinishClose(w.stranger.getSender()), ChannelExitCodes.windowOpen)
    expectExit(w, await w.channel.sendTopUp(w.payer.getSender(), toNano('1')), ChannelExitCodes.notOpen)
    expectExit(w, await w.channel.sendStartClose(w.payer.getSender(), null), ChannelExitCodes.notOpen)

    w.chain.now = START_TIME + WINDOW_S
    const strangerBefore = await w.stranger.getBalance()
    const finish = await w.channel.sendFinishClose(w.stranger.getSender())
    expect(onChannel(w, finish).aborted).to.equal(false)
    recordFee('finish close', w, finish)
    expect(received(finish, w.payee.address)).to.equal(owed)
    below(strangerBefore - await w.stranger.getBalance(), toNano('0.01'), 'the stranger paid only fees')
    within(received(finish, w.payer.address), FUNDING - owed - toNano('0.02'), FUNDING - owed)
    expect((await w.channel.getChannel()).status).to.equal('closed')
    expectExit(w, await w.channel.sendFinishClose(w.stranger.getSender()), ChannelExitCodes.closed)
  })

  it('lets the payee win against a payer who closes with an older state, up to the last second of the window', async () => {
    const w = await world()
    const old = signed(w, 3n, toNano('1'))
    const latest = signed(w, 9n, toNano('6'))
    expect(onChannel(w, await w.channel.sendStartClose(w.payer.getSender(), old)).aborted).to.equal(false)

    // replays: the same or an older seqno
    expectExit(w, await w.channel.sendChallenge(w.payee.getSender(), old), ChannelExitCodes.staleState)
    expectExit(w, await w.channel.sendChallenge(w.payee.getSender(), signed(w, 2n, toNano('7'))), ChannelExitCodes.staleState)
    expectExit(w, await w.channel.sendChallenge(w.stranger.getSender(), latest), ChannelExitCodes.notParty)
    expectExit(w, await w.channel.sendChallenge(w.payee.getSender(), { ...latest, payeeSignature: Buffer.alloc(64, 7) }), ChannelExitCodes.badPayeeSignature)

    w.chain.now = START_TIME + WINDOW_S - 1
    const challenge = await w.channel.sendChallenge(w.payee.getSender(), latest)
    expect(onChannel(w, challenge).aborted).to.equal(false)
    recordFee('challenge', w, challenge)
    within(received(challenge, w.payee.address), OPERATION_VALUE - toNano('0.01'), OPERATION_VALUE, 'the unspent value of Challenge back to the payee')
    expect(await w.channel.getChannel()).to.include({ status: 'closing', seqno: 9n, cumulative: toNano('6'), closingSince: START_TIME })
    // a cooperative close cannot go back to an older state either
    expectExit(w, await w.channel.sendCooperativeClose(w.payer.getSender(), signed(w, 8n, toNano('2'), { tag: 'cooperative' })), ChannelExitCodes.staleState)

    w.chain.now = START_TIME + WINDOW_S
    expectExit(w, await w.channel.sendChallenge(w.payee.getSender(), signed(w, 10n, toNano('7'))), ChannelExitCodes.windowOver)
    const finish = await w.channel.sendFinishClose(w.payer.getSender())
    expect(received(finish, w.payee.address), 'the payee loses nothing').to.equal(toNano('6'))
  })

  it('lets the payer recover everything when nothing was ever signed', async () => {
    const w = await world()
    const start = await w.channel.sendStartClose(w.payer.getSender(), null)
    expect(onChannel(w, start).aborted).to.equal(false)
    expect(await w.channel.getChannel()).to.include({ status: 'closing', seqno: 0n, cumulative: 0n })
    w.chain.now = START_TIME + WINDOW_S
    const payerBefore = await w.payer.getBalance()
    const finish = await w.channel.sendFinishClose(w.payer.getSender())
    expect(received(finish, w.payee.address)).to.equal(0n)
    const back = (await w.payer.getBalance()) - payerBefore
    within(back, FUNDING - toNano('0.02'), FUNDING)
  })

  it('refuses a start close from a stranger, a challenge while open, unknown opcodes and empty bodies', async () => {
    const w = await world()
    expectExit(w, await w.channel.sendStartClose(w.stranger.getSender(), signed(w, 1n, 1n)), ChannelExitCodes.notParty)
    expectExit(w, await w.channel.sendChallenge(w.payee.getSender(), signed(w, 1n, 1n)), ChannelExitCodes.notClosing)
    expectExit(w, await w.channel.sendFinishClose(w.payee.getSender()), ChannelExitCodes.notClosing)
    const unknown = await w.payer.send({ to: w.channel.address, value: toNano('0.05'), body: beginCell().storeUint(0xdeadbeef, 32).storeUint(0, 64).endCell() })
    expectExit(w, unknown, ChannelExitCodes.unknownOp)
    const empty = await w.payer.send({ to: w.channel.address, value: toNano('0.05') })
    expectExit(w, empty, ChannelExitCodes.unknownOp)
    expect((await w.channel.getChannel()).status).to.equal('open')
  })

  it('accepts states signed off chain by the nodes\' channel keys', async () => {
    const payerSeed = randomBytes(32)
    const payeeSeed = randomBytes(32)
    const w = await world({ payerSeed, payeeSeed })
    const payerKey = ChannelKey.fromSeed(payerSeed)
    const payeeKey = ChannelKey.fromSeed(payeeSeed)
    expect(Buffer.from(payerKey.publicKey).equals(w.payerKeys.publicKey)).to.equal(true)
    const record = { address: w.channel.address.toRawString(), networkId: NETWORK_ID, channelId: 1n }
    const state = { channel: record.address, seqno: 4n, cumulative: toNano('1.5') }
    const close = await w.channel.sendCooperativeClose(w.payer.getSender(), {
      ...state,
      payerSignature: signState(payerKey, record, state, 'cooperative'),
      payeeSignature: signState(payeeKey, record, state, 'cooperative')
    })
    expect(onChannel(w, close).aborted).to.equal(false)
    expect(received(close, w.payee.address)).to.equal(toNano('1.5'))
  })

  it('accepts a bounced message without touching its state', async () => {
    const w = await world()
    const before = await w.channel.getChannel()
    const result = await w.chain.sendMessage(internal({ from: w.stranger.address, to: w.channel.address, value: toNano('0.05'), bounced: true, body: beginCell().storeUint(0xffffffff, 32).storeUint(0, 64).endCell() }))
    const tx = onChannel(w, result)
    expect(tx.aborted).to.equal(false)
    expect(tx.outMessagesCount).to.equal(0)
    const after = await w.channel.getChannel()
    const fields = (i: typeof before): unknown[] => [i.status, i.deposited, i.seqno, i.cumulative, i.closingSince, i.payer.toString(), i.payee.toString()]
    expect(fields(after)).to.deep.equal(fields(before))
  })
})

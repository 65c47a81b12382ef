import { join } from 'node:path'
import { expect } from 'chai'
import { Address } from '@ton/core'
import { ChannelError } from '../../src/errors.js'
import { ChannelKey } from '../../src/settlement/channel-key.js'
import { ChannelManager } from '../../src/settlement/channel-manager.js'
import { signState } from '../../src/settlement/channel-state.js'
import { openChannelStore } from '../../src/settlement/store.js'
import { FakeChain } from '../fake-chain.js'
import { cleanupTempDirs, noLog, tempDir } from '../helpers.js'
import type { ChannelInfo, PaymentChannelConfig } from '../../contracts/payment-channel.js'
import type { ChainAdapter, ChannelStore } from '../../src/settlement/types.js'

const PAYER_WALLET = '0:' + '11'.repeat(32)
const PAYEE_WALLET = '0:' + '22'.repeat(32)

describe('channel manager', () => {
  let store: ChannelStore
  let chain: FakeChain
  const payerKey = ChannelKey.generate()
  const payeeKey = ChannelKey.generate()

  const manager = (side: 'payer' | 'payee'): ChannelManager => new ChannelManager({
    store,
    key: side === 'payer' ? payerKey : payeeKey,
    chain: chain as unknown as ChainAdapter,
    wallet: side === 'payer' ? PAYER_WALLET : PAYEE_WALLET,
    deposit: 2_000_000_000n,
    disputeWindowS: 3_600,
    minDisputeWindowS: 600,
    minDeposit: 1_000_000_000n,
    creditWindow: 1_000n,
    log: noLog
  })
  const terms = { chain: 'devnet' as const, networkId: 7, wallet: PAYEE_WALLET, channelKey: payeeKey.publicKey, minDisputeWindowS: 600, minDeposit: 1_000_000_000n, creditWindow: 1_000n }
  const config = (over: Partial<PaymentChannelConfig> = {}): PaymentChannelConfig => ({
    networkId: 7, channelId: 5n, disputeWindowS: 3_600, payerKey: Buffer.from(payerKey.publicKey), payeeKey: Buffer.from(payeeKey.publicKey),
    payer: Address.parseRaw(PAYER_WALLET), payee: Address.parseRaw(PAYEE_WALLET), ...over
  })
  const openRequest = (c: PaymentChannelConfig): { channel: string, channelId: bigint, payerKey: Uint8Array, payerWallet: string, disputeWindowS: number } =>
    ({ channel: chain.channelAddress(c), channelId: c.channelId, payerKey: c.payerKey, payerWallet: PAYER_WALLET, disputeWindowS: c.disputeWindowS })

  beforeEach(async () => {
    store = openChannelStore(join(await tempDir(), 'channels.sqlite'))
    chain = new FakeChain()
  })
  afterEach(() => { store.close() })
  after(cleanupTempDirs)

  async function refusal (promise: Promise<unknown>): Promise<string> {
    const err = await promise.then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ChannelError)
    return (err as ChannelError).reason
  }

  it('as payee, takes only a deployed channel of our code, to our wallet and key, with enough deposit and window', async () => {
    const payee = manager('payee')
    const good = config()
    expect(await refusal(payee.acceptOpen('peer', openRequest(good))), 'not deployed yet').to.equal('unknown_channel')
    await chain.openChannel(good, 2_000_000_000n)
    // the claimed parameters must derive the claimed address
    expect(await refusal(payee.acceptOpen('peer', { ...openRequest(good), channelId: 6n }))).to.equal('wrong_channel')
    expect(await refusal(payee.acceptOpen('peer', { ...openRequest(good), payerWallet: PAYEE_WALLET }))).to.equal('wrong_channel')
    expect((await payee.acceptOpen('peer', openRequest(good))).record).to.include({ side: 'payee', peerId: 'peer', status: 'open', deposited: 2_000_000_000n })
    expect(await refusal(payee.acceptOpen('someone-else', openRequest(good))), 'another peer claiming it').to.equal('wrong_channel')
    const short = config({ channelId: 8n, disputeWindowS: 60 })
    await chain.openChannel(short, 2_000_000_000n)
    expect(await refusal(payee.acceptOpen('peer', openRequest(short))), 'dispute window too short').to.equal('wrong_channel')
    const poor = config({ channelId: 9n })
    await chain.openChannel(poor, 10n)
    expect(await refusal(payee.acceptOpen('peer', openRequest(poor))), 'deposit too small').to.equal('overspent')
  })

  it('as payer, marks a channel whose opening never reached the chain closed, and keeps one that landed despite an error', async () => {
    const payer = manager('payer')
    chain.failOpen = 'lost'
    const err = await payer.ensurePayer('proxy', terms, async () => {}).then(() => undefined, (e: unknown) => e as Error)
    expect(err?.message).to.match(/timed out/)
    expect(store.listChannels().map(c => c.status)).to.deep.equal(['closed'])
    expect(payer.payerFor('proxy')).to.equal(undefined)
    chain.failOpen = 'landed'
    const channel = await payer.ensurePayer('proxy', terms, async () => {})
    expect(channel.record.status).to.equal('open')
    expect(payer.payerFor('proxy')?.address).to.equal(channel.address)
  })

  it('as payee, countersigns a cooperative close only at or above what was paid, and only with the payer\'s signature', async () => {
    const payee = manager('payee')
    const c = config()
    await chain.openChannel(c, 2_000_000_000n)
    const end = await payee.acceptOpen('peer', openRequest(c))
    const address = end.address
    const record = end.record
    const state = { channel: address, seqno: 3n, cumulative: 5_000n }
    end.accept({ ...state, payerSignature: signState(payerKey, record, state) })
    const close = (seqno: bigint, cumulative: bigint, key = payerKey): { channel: string, seqno: bigint, cumulative: bigint, payerSignature: Uint8Array } =>
      ({ channel: address, seqno, cumulative, payerSignature: signState(key, record, { channel: address, seqno, cumulative }, 'cooperative') })
    expect((() => { try { payee.acceptClose('peer', close(3n, 4_000n)); return 'accepted' } catch (e) { return (e as ChannelError).reason } })(), 'less than paid').to.equal('stale_state')
    expect((() => { try { payee.acceptClose('peer', close(3n, 5_000n, payeeKey)); return 'accepted' } catch (e) { return (e as ChannelError).reason } })(), 'not the payer\'s signature').to.equal('bad_signature')
    expect((() => { try { payee.acceptClose('other', close(3n, 5_000n)); return 'accepted' } catch (e) { return (e as ChannelError).reason } })(), 'not this peer\'s channel').to.equal('unknown_channel')
    expect(payee.acceptClose('peer', close(3n, 5_000n))).to.have.length(64)
    expect(store.getChannel(address)?.status).to.equal('closing')
  })

  it('watches closing channels: challenges an older state inside the window, finishes after it', async () => {
    const payee = manager('payee')
    const c = config()
    await chain.openChannel(c, 2_000_000_000n)
    const end = await payee.acceptOpen('peer', openRequest(c))
    const state = { channel: end.address, seqno: 4n, cumulative: 9_000n }
    end.accept({ ...state, payerSignature: signState(payerKey, end.record, state) })
    const onChain = chain.channels.get(end.address) as ChannelInfo
    chain.channels.set(end.address, { ...onChain, status: 'closing', seqno: 2n, cumulative: 1_000n, closingSince: 900 })
    expect(await payee.watch()).to.deep.equal([{ channel: end.address, action: 'challenged' }])
    chain.channels.set(end.address, { ...onChain, status: 'closing', seqno: 4n, cumulative: 9_000n, closingSince: 900 })
    expect(await payee.watch(), 'nothing to do inside the window').to.deep.equal([])
    chain.nowS = 900 + 3_600
    expect(await payee.watch()).to.deep.equal([{ channel: end.address, action: 'finished' }])
    expect(store.getChannel(end.address)?.status).to.equal('closed')
  })
})

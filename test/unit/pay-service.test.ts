/**
 * `/cocoon/pay` over in-memory streams: the payee's PayService with a real
 * ChannelManager and store, the payer's manager and request functions, a
 * chain that keeps channels in a map.
 */
import '../../src/polyfills.js'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { RemoteError } from '../../src/errors.js'
import { ErrorCode, request } from '../../src/p2p/framing.js'
import { PAY_MAX_FRAME_BYTES, PAY_PROTOCOL } from '../../src/p2p/constants.js'
import { PayRequest, PayResponse } from '../../src/gen/pay.pb.js'
import { ChannelKey, verifySignature } from '../../src/settlement/channel-key.js'
import { ChannelManager } from '../../src/settlement/channel-manager.js'
import { announceOpen, fetchTerms, PayService, requestClose, sendUpdate, syncChannel } from '../../src/settlement/pay-service.js'
import { signState, stateDigest } from '../../src/settlement/channel-state.js'
import { openChannelStore } from '../../src/settlement/store.js'
import { FakeChain } from '../fake-chain.js'
import { cleanupTempDirs, noLog, tempDir } from '../helpers.js'
import { MemoryNet } from '../memory-net.js'
import type { MemoryHost } from '../memory-net.js'
import type { PayerChannel } from '../../src/settlement/channels.js'
import type { ChainAdapter, ChannelStore } from '../../src/settlement/types.js'
import type { PeerId } from '@libp2p/interface'

const PAYER_WALLET = '0:' + '11'.repeat(32)
const PAYEE_WALLET = '0:' + '22'.repeat(32)

describe('/cocoon/pay (PayService)', () => {
  let stores: ChannelStore[] = []
  let payerHost: MemoryHost
  let strangerHost: MemoryHost
  let payeeId: PeerId
  let payer: ChannelManager
  let payee: ChannelManager
  let channel: PayerChannel
  let payerKey: ChannelKey

  const manager = async (key: ChannelKey, wallet: string, chain: FakeChain): Promise<ChannelManager> => {
    const store = openChannelStore(join(await tempDir(), 'channels.sqlite'))
    stores.push(store)
    return new ChannelManager({
      store, key, chain: chain as unknown as ChainAdapter, wallet, deposit: 2_000_000_000n, disputeWindowS: 3_600,
      minDisputeWindowS: 600, minDeposit: 1_000_000_000n, creditWindow: 1_000n, log: noLog
    })
  }

  beforeEach(async () => {
    const net = new MemoryNet()
    const chain = new FakeChain()
    payeeId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const payerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const payeeHost = net.add(payeeId)
    payerHost = net.add(payerId)
    strangerHost = net.add(peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
    payee = await manager(ChannelKey.generate(), PAYEE_WALLET, chain)
    payerKey = ChannelKey.generate()
    payer = await manager(payerKey, PAYER_WALLET, chain)
    await new PayService(payeeHost, { manager: payee, log: noLog }).start()
    // the payer learns the terms, deploys the channel and announces it: the payee checks it on chain
    const terms = await fetchTerms(payerHost, payeeId)
    expect(terms.wallet).to.equal(PAYEE_WALLET)
    expect(terms.creditWindow).to.equal(1_000n)
    channel = await payer.ensurePayer(payeeId.toString(), terms, async (record) => { await announceOpen(payerHost, payeeId, record) })
  })

  afterEach(() => {
    for (const s of stores) s.close()
    stores = []
  })
  after(cleanupTempDirs)

  async function refused (promise: Promise<unknown>): Promise<RemoteError> {
    const err = await promise.then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(RemoteError)
    return err as RemoteError
  }

  it('opens a channel the payee checked on chain, and countersigns updates with a signature that verifies', async () => {
    expect(payee.payee(channel.address)?.record).to.include({ side: 'payee', status: 'open', peerId: payerHost.peerId.toString() })
    const update = channel.payUpTo(400n)
    const countersignature = await sendUpdate(payerHost, payeeId, update)
    const record = payee.payee(channel.address)?.record
    expect(record).to.not.equal(undefined)
    expect(verifySignature(payee.terms().channelKey, stateDigest(record as NonNullable<typeof record>, update), countersignature)).to.equal(true)
    expect(payee.payee(channel.address)?.received).to.equal(400n)
  })

  it('refuses forged updates, repeats under another signature, and another peer\'s use of the channel; the payee keeps serving', async () => {
    const honest = channel.payUpTo(400n)
    const forged = await refused(sendUpdate(payerHost, payeeId, { ...honest, cumulative: 900n }))
    expect(forged.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    await sendUpdate(payerHost, payeeId, honest)
    const repeat = await refused(sendUpdate(payerHost, payeeId, { ...honest, payerSignature: new Uint8Array(64).fill(1) }))
    expect(repeat.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    const stranger = await refused(sendUpdate(strangerHost, payeeId, channel.payUpTo(500n)))
    expect(stranger.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    expect(stranger.message).to.match(/not a channel from this peer/)
    expect(payee.payee(channel.address)?.received, 'only the honest state was stored').to.equal(400n)
    // an empty request is a bad request, not a crash
    const empty = await refused(request(payerHost, payeeId, PAY_PROTOCOL, { request: PayRequest, response: PayResponse }, {}, { maxFrameBytes: PAY_MAX_FRAME_BYTES }))
    expect(empty.remoteCode).to.equal(ErrorCode.BAD_REQUEST)
    expect((await fetchTerms(payerHost, payeeId)).wallet).to.equal(PAYEE_WALLET)
  })

  it('refuses a validly signed state that would pin the channel (seqno 2^64 - 1), in an update and in a sync; honest states still count', async () => {
    await sendUpdate(payerHost, payeeId, channel.payUpTo(400n))
    const pin = { channel: channel.address, seqno: 2n ** 64n - 1n, cumulative: 500n }
    const pinned = { ...pin, payerSignature: signState(payerKey, channel.record, pin) }
    const byUpdate = await refused(sendUpdate(payerHost, payeeId, pinned))
    expect(byUpdate.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    expect(byUpdate.message).to.match(/jumps/)
    const bySync = await refused(syncChannel(payerHost, payeeId, channel.address, { ...pinned, payeeSignature: null, savedAtMs: 0 }))
    expect(bySync.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    expect(payee.payee(channel.address)?.latest()?.seqno, 'nothing stored').to.equal(1n)
    // the payer's next honest state is still newer than anything the payee holds
    await sendUpdate(payerHost, payeeId, channel.payUpTo(600n))
    expect(payee.payee(channel.address)?.received).to.equal(600n)
  })

  it('syncs a state the payee never stored (its answer was lost), and closes cooperatively at or above what was paid', async () => {
    await sendUpdate(payerHost, payeeId, channel.payUpTo(300n))
    // signed and kept by the payer, never delivered
    channel.payUpTo(700n)
    const view = await syncChannel(payerHost, payeeId, channel.address, channel.latest())
    expect(view.latest?.cumulative).to.equal(700n)
    expect(payee.payee(channel.address)?.received).to.equal(700n)
    const proposal = { channel: channel.address, ...payer.closeProposal(channel.address) }
    const tooLow = await refused(requestClose(payerHost, payeeId, { ...proposal, seqno: 1n, cumulative: 300n }))
    expect(tooLow.remoteCode).to.equal(ErrorCode.PAYMENT_REFUSED)
    const signature = await requestClose(payerHost, payeeId, proposal)
    expect(signature.byteLength).to.equal(64)
    expect(payee.payee(channel.address)?.record.status).to.equal('closing')
  })
})

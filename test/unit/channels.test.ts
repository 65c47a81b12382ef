import { join } from 'node:path'
import { expect } from 'chai'
import { toNano } from '@ton/core'
import { CLOSE_RESERVE } from '../../contracts/payment-channel.js'
import { ChannelError } from '../../src/errors.js'
import { ChannelKey, portableEd25519 } from '../../src/settlement/channel-key.js'
import { MAX_SEQNO_STEP, PayeeChannel, PayerChannel, spendable } from '../../src/settlement/channels.js'
import { signState } from '../../src/settlement/channel-state.js'
import { openChannelStore } from '../../src/settlement/store.js'
import { CHANNEL_ADDRESS, channelRecord, openChannelPair } from '../channel-fixtures.js'
import { nodeEd25519 } from '../../src/settlement/channel-key-node.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { ChannelRecord, ChannelStore } from '../../src/settlement/types.js'

const ADDRESS = CHANNEL_ADDRESS

function refusal (fn: () => unknown): ChannelError {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(ChannelError)
    return err as ChannelError
  }
  throw new Error('expected a ChannelError')
}

describe('payment channel ends', () => {
  let payerKey: ChannelKey
  let payeeKey: ChannelKey
  let payerStore: ChannelStore
  let payeeStore: ChannelStore
  let payer: PayerChannel
  let payee: PayeeChannel
  let dir: string

  beforeEach(async () => {
    dir = await tempDir()
    ;({ payerKey, payeeKey, payerStore, payeeStore, payer, payee } = openChannelPair(dir))
  })

  afterEach(() => {
    payerStore.close()
    payeeStore.close()
  })

  after(cleanupTempDirs)

  it('pays, countersigns and leaves both sides holding the same both-signed state', () => {
    const update = payer.payUpTo(1_000n)
    expect(update).to.include({ channel: ADDRESS, seqno: 1n, cumulative: 1_000n })
    expect(payerStore.latestState(ADDRESS)?.payeeSignature, 'stored before it is sent').to.equal(null)
    const countersignature = payee.accept(update)
    expect(payeeStore.latestBothSigned(ADDRESS)?.seqno).to.equal(1n)
    payer.countersigned(update.seqno, countersignature)
    const a = payerStore.latestBothSigned(ADDRESS)
    const b = payeeStore.latestBothSigned(ADDRESS)
    expect(a?.cumulative).to.equal(1_000n)
    expect(Buffer.from(a?.payeeSignature ?? []).equals(Buffer.from(b?.payeeSignature ?? [])), 'same countersignature on both sides').to.equal(true)
    expect(payer.paid).to.equal(1_000n)
    expect(payee.received).to.equal(1_000n)
  })

  it('retransmits instead of re-signing when asked to pay no more than already paid', () => {
    const first = payer.payUpTo(500n)
    expect(payer.payUpTo(500n)).to.deep.equal(first)
    expect(payer.payUpTo(100n).seqno).to.equal(1n)
    expect(payer.payUpTo(600n).seqno).to.equal(2n)
  })

  it('answers a repeated update with the same countersignature, and refuses older, decreasing and conflicting ones', () => {
    const one = payer.payUpTo(500n)
    const sig = payee.accept(one)
    expect(Buffer.from(payee.accept(one)).equals(Buffer.from(sig))).to.equal(true)
    const two = payer.payUpTo(900n)
    payee.accept(two)
    expect(refusal(() => payee.accept(one)).reason).to.equal('stale_state')
    // a payer that signs a lower amount at a higher seqno (it cannot through payUpTo)
    const lower = { ...two, seqno: 3n, cumulative: 100n }
    expect(refusal(() => payee.accept(lower)).reason).to.equal('decreasing')
    expect(payeeStore.latestState(ADDRESS)?.seqno).to.equal(2n)
    // a "repeat" of the latest state under a random signature is no repeat: nothing is answered
    const random = { ...two, payerSignature: new Uint8Array(64).fill(7) }
    expect(refusal(() => payee.accept(random)).reason).to.equal('bad_signature')
  })

  it('refuses forged, misdirected and over-deposit updates, storing nothing', () => {
    const honest = payer.payUpTo(500n)
    const forged = { ...honest, cumulative: 5_000n }
    expect(refusal(() => payee.accept(forged)).reason).to.equal('bad_signature')
    const stranger = ChannelKey.generate()
    const strangerStore = openChannelStore(join(dir, 'stranger.sqlite'))
    strangerStore.putChannel(channelRecord('payer', stranger, payeeKey))
    const byStranger = new PayerChannel(channelRecord('payer', stranger, payeeKey), strangerStore, stranger).payUpTo(500n)
    strangerStore.close()
    expect(refusal(() => payee.accept(byStranger)).reason).to.equal('bad_signature')
    expect(refusal(() => payee.accept({ ...honest, channel: '0:' + 'cd'.repeat(32) })).reason).to.equal('wrong_channel')
    expect(payeeStore.latestState(ADDRESS)).to.equal(undefined)
    expect(refusal(() => payer.payUpTo(spendable(payer.record) + 1n)).reason).to.equal('overspent')
    expect(spendable(payer.record)).to.equal(toNano('1') - CLOSE_RESERVE)
  })

  it('refuses a state that would pin the channel (a seqno far ahead), and the honest states after it still count', () => {
    payee.accept(payer.payUpTo(100n))
    // validly signed by the payer, at the highest seqno the contract holds: every later state would be older
    const pin = { channel: ADDRESS, seqno: 2n ** 64n - 1n, cumulative: 200n }
    const pinned = { ...pin, payerSignature: signState(payerKey, payer.record, pin) }
    expect(refusal(() => payee.accept(pinned)).reason).to.equal('seqno_jump')
    const farButSmaller = { channel: ADDRESS, seqno: 1n + MAX_SEQNO_STEP + 1n, cumulative: 200n }
    expect(refusal(() => payee.accept({ ...farButSmaller, payerSignature: signState(payerKey, payer.record, farButSmaller) })).reason).to.equal('seqno_jump')
    expect(payeeStore.latestState(ADDRESS)?.seqno).to.equal(1n)
    // within the step (states lost on the way): taken
    const gap = { channel: ADDRESS, seqno: 1n + MAX_SEQNO_STEP, cumulative: 300n }
    payee.accept({ ...gap, payerSignature: signState(payerKey, payer.record, gap) })
    expect(payee.received).to.equal(300n)
  })

  it('refuses, on a job, a state paying more than was delivered plus the credit window', () => {
    payee.earn(1_000n)
    const state = { channel: ADDRESS, seqno: 1n, cumulative: 1_501n }
    const over = { ...state, payerSignature: signState(payerKey, payer.record, state) }
    expect(refusal(() => payee.accept(over, payee.earned + 500n)).reason).to.equal('overpaid')
    expect(payeeStore.latestState(ADDRESS)).to.equal(undefined)
    payee.accept(payer.payUpTo(1_500n), payee.earned + 500n)
    expect(payee.received).to.equal(1_500n)
  })

  it('keeps the unpaid credit within the window, counting only what was delivered', () => {
    const window = 1_000n
    expect(payee.mayDeliver(800n, window)).to.equal(true)
    payee.earn(800n)
    expect(payee.unpaid).to.equal(800n)
    expect(payee.mayDeliver(300n, window), 'would owe 1100').to.equal(false)
    payee.accept(payer.payUpTo(800n))
    expect(payee.unpaid).to.equal(0n)
    expect(payee.mayDeliver(1_000n, window)).to.equal(true)
  })

  it('resumes after a restart from what the store holds', () => {
    const update = payer.payUpTo(700n)
    payer.countersigned(update.seqno, payee.accept(update))
    payerStore.close()
    payeeStore.close()
    payerStore = openChannelStore(join(dir, 'payer.sqlite'))
    payeeStore = openChannelStore(join(dir, 'payee.sqlite'))
    const payer2 = new PayerChannel(payerStore.getChannel(ADDRESS) as ChannelRecord, payerStore, payerKey)
    const payee2 = new PayeeChannel(payeeStore.getChannel(ADDRESS) as ChannelRecord, payeeStore, payeeKey)
    expect(payer2.paid).to.equal(700n)
    expect(payee2.received).to.equal(700n)
    expect(payee2.unpaid).to.equal(0n)
    const next = payer2.payUpTo(900n)
    expect(next.seqno).to.equal(2n)
    payer2.countersigned(next.seqno, payee2.accept(next))
    expect(payerStore.latestBothSigned(ADDRESS)?.cumulative).to.equal(900n)
  })

  it('signs a state once the unpaid part reaches the threshold, and settles the rest at the end', () => {
    payer.payThreshold = 1_000n
    expect(payer.owe(400n)).to.equal(null)
    const first = payer.owe(700n)
    expect(first?.cumulative).to.equal(1_100n)
    expect(payer.settle()).to.equal(null)
    expect(payer.owe(50n)).to.equal(null)
    expect(payer.owed).to.equal(1_150n)
    expect(payer.settle()?.cumulative).to.equal(1_150n)
    expect(payerStore.latestState(ADDRESS)?.seqno).to.equal(2n)
  })

  it('moves the both-signed state forward with a countersignature that arrives after newer states', () => {
    const one = payer.payUpTo(100n)
    const two = payer.payUpTo(200n)
    const sigOne = payee.accept(one)
    const sigTwo = payee.accept(two)
    payer.countersigned(one.seqno, sigOne)
    expect(payerStore.latestBothSigned(ADDRESS)?.seqno, 'the older one still counts').to.equal(1n)
    expect(payerStore.latestState(ADDRESS)?.seqno).to.equal(2n)
    payer.countersigned(two.seqno, sigTwo)
    expect(payerStore.latestBothSigned(ADDRESS)?.seqno).to.equal(2n)
    // late and repeated: no harm, nothing moves back
    payer.countersigned(one.seqno, sigOne)
    expect(payerStore.latestBothSigned(ADDRESS)?.seqno).to.equal(2n)
    expect(refusal(() => payer.countersigned(9n, sigTwo)).reason, 'a state never signed').to.equal('stale_state')
    const three = payer.payUpTo(300n)
    expect(refusal(() => payer.countersigned(three.seqno, sigTwo)).reason, 'a signature over another state').to.equal('bad_signature')
  })

  it('pays nothing on a channel that is not open', () => {
    payer.update({ status: 'closing' })
    expect(refusal(() => payer.payUpTo(1n)).reason).to.equal('not_open')
    expect(payerStore.getChannel(ADDRESS)?.status).to.equal('closing')
  })
})

describe('channel keys on every platform', () => {
  it('the portable ed25519 (browsers) and OpenSSL (Node) give the same keys and signatures and accept each other\'s', () => {
    const seed = new Uint8Array(32).fill(9)
    const message = new Uint8Array(32).fill(4)
    const portable = portableEd25519.signer(seed)
    const openssl = nodeEd25519.signer(seed)
    expect(Buffer.from(portable.publicKey).equals(Buffer.from(openssl.publicKey))).to.equal(true)
    const signature = portable.sign(message)
    expect(Buffer.from(signature).equals(Buffer.from(openssl.sign(message))), 'ed25519 is deterministic').to.equal(true)
    expect(nodeEd25519.verify(portable.publicKey, message, signature)).to.equal(true)
    expect(portableEd25519.verify(openssl.publicKey, message, openssl.sign(message))).to.equal(true)
    const forged = Uint8Array.from(signature, (b, i) => i === 0 ? b ^ 1 : b)
    for (const p of [portableEd25519, nodeEd25519]) {
      expect(p.verify(portable.publicKey, message, forged)).to.equal(false)
      expect(p.verify(new Uint8Array(31), message, signature), 'a malformed key never throws').to.equal(false)
    }
  })
})

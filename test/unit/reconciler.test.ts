import { expect } from 'chai'
import { PayeeChannel, PayerChannel } from '../../src/settlement/channels.js'
import { JobPayee } from '../../src/settlement/job-payments.js'
import { ChannelReconciler } from '../../src/settlement/reconciler.js'
import { CHANNEL_ADDRESS, openChannelPair } from '../channel-fixtures.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { ChannelManager } from '../../src/settlement/channel-manager.js'
import type { PaymentUpdate } from '../../src/settlement/channels.js'
import type { ChannelStore } from '../../src/settlement/types.js'

const ADDRESS = CHANNEL_ADDRESS
const PAYEE_PEER = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

describe('channel reconciler', () => {
  let payerStore: ChannelStore
  let payeeStore: ChannelStore
  let payer: PayerChannel
  let payee: PayeeChannel
  let manager: ChannelManager
  let now: number

  beforeEach(async () => {
    ;({ payerStore, payeeStore, payer, payee } = openChannelPair(await tempDir(), { peerId: PAYEE_PEER }))
    manager = { list: (filter?: Parameters<ChannelStore['listChannels']>[0]) => payerStore.listChannels(filter), payer: (a: string) => a === ADDRESS ? payer : undefined } as unknown as ChannelManager
    now = Date.now()
  })

  afterEach(() => {
    payerStore.close()
    payeeStore.close()
  })

  after(cleanupTempDirs)

  const reconciler = (send: (update: PaymentUpdate) => Uint8Array, quietMs = 3_000): ChannelReconciler =>
    new ChannelReconciler({ manager, send: async (_peer, update) => send(update), log: () => {}, now: () => now, quietMs })

  it('brings a payee that missed the last states level with the payer, once the channel is quiet', async () => {
    payee.accept(payer.payUpTo(1_000n))
    payer.payUpTo(2_500n)
    payer.payUpTo(4_000n) // neither reached the payee: the ends disagree
    expect(payee.received).to.equal(1_000n)
    const r = reconciler(update => payee.accept(update))
    expect(r.due(), 'just signed: may still be on its way').to.deep.equal([])
    now += 3_500
    expect(r.due()).to.deep.equal([ADDRESS])
    await r.resend(ADDRESS)
    expect(payee.received).to.equal(4_000n)
    expect(payeeStore.latestBothSigned(ADDRESS)?.seqno).to.equal(3n)
    expect(payerStore.latestBothSigned(ADDRESS)?.seqno, 'the payer stored the countersignature').to.equal(3n)
    expect(r.due(), 'nothing left to re-send').to.deep.equal([])
    expect(r.reconciled).to.equal(1)
  })

  it('leaves a channel whose latest state is countersigned alone, and backs off after a failed re-send', async () => {
    const first = payer.payUpTo(700n)
    payer.countersigned(first.seqno, payee.accept(first))
    now += 10_000
    let sends = 0
    const failing = reconciler(() => { sends++; throw new Error('payee unreachable') })
    expect(failing.due()).to.deep.equal([])
    payer.payUpTo(900n)
    now += 10_000
    await failing.resend(ADDRESS)
    expect(sends).to.equal(1)
    expect(failing.due(), 'backing off').to.deep.equal([])
    now += 5_000
    expect(failing.due()).to.deep.equal([ADDRESS])
    await failing.resend(ADDRESS)
    now += 5_000
    expect(failing.due(), 'the wait doubled').to.deep.equal([])
    now += 5_000
    expect(failing.due()).to.deep.equal([ADDRESS])
    expect(payee.received, 'nothing arrived').to.equal(700n)
  })

  it('a job on the payee side takes a state the re-send already superseded without stopping', async () => {
    const old = payer.payUpTo(300n)
    const latest = payer.payUpTo(600n)
    payee.accept(latest)
    const job = new JobPayee(payee, { promptPerM: 0n, completionPerM: 1_000_000n, cachedBp: 0, reasoningBp: 0 }, 1_000n)
    expect(await job.accept(old), 'superseded: nothing to store or answer').to.equal(null)
    expect(payee.received).to.equal(600n)
    // a repeat of the latest is answered with its countersignature
    expect(await job.accept(latest)).to.be.instanceOf(Uint8Array)
  })
})

import { expect } from 'chai'
import { rankWorkers } from '../../src/roles/proxy/job-router.js'
import type { WorkerEntry, WorkerOffer } from '../../src/roles/proxy/worker-registry.js'

function worker (peerId: string, over: { offer?: Partial<WorkerOffer>, entry?: Partial<WorkerEntry> } = {}): { entry: WorkerEntry, offer: WorkerOffer } {
  const offer: WorkerOffer = { model: 'm', weightsHash: '', contextLength: 2048, pricePromptPerM: 10n, priceCompletionPerM: 20n, maxConcurrent: 4, freeSlots: 4, synthetic: false, description: '', ...over.offer }
  const entry = { peerId, offers: [offer], successRate: 1, latencyMs: 500, state: 'up', ...over.entry } as unknown as WorkerEntry
  return { entry, offer }
}
const cap = { promptPerM: 100n, completionPerM: 100n }
const none = (): number => 0
const noJitter = (): number => 0

describe('job routing', () => {
  it('tells an unknown model from a price cap from a full house', () => {
    expect(rankWorkers('m', [], cap, none)).to.include({ ok: false, code: 'model_unknown' })
    const dear = rankWorkers('m', [worker('a', { offer: { priceCompletionPerM: 500n } })], cap, none)
    expect(dear).to.include({ ok: false, code: 'price_too_low' })
    expect((dear as { message: string }).message).to.match(/cheapest asks 10\/500/)
    expect(rankWorkers('m', [worker('a', { offer: { freeSlots: 0 } })], cap, none)).to.include({ ok: false, code: 'no_capacity' })
  })

  it('counts the proxy\'s own jobs when the announcement lags', () => {
    expect(rankWorkers('m', [worker('a')], cap, () => 4)).to.include({ ok: false, code: 'no_capacity' })
  })

  it('prefers free slots, fewer failures and lower prices', () => {
    const ranked = (list: Array<{ entry: WorkerEntry, offer: WorkerOffer }>): string[] => {
      const d = rankWorkers('m', list, cap, none, noJitter)
      return d.ok ? d.workers.map(w => w.entry.peerId) : []
    }
    expect(ranked([worker('busy', { offer: { freeSlots: 1 } }), worker('idle')])).to.deep.equal(['idle', 'busy'])
    expect(ranked([worker('flaky', { entry: { successRate: 0.5 } }), worker('solid')])).to.deep.equal(['solid', 'flaky'])
    expect(ranked([worker('dear', { offer: { priceCompletionPerM: 80n } }), worker('cheap')])).to.deep.equal(['cheap', 'dear'])
  })

  it('spreads load between equal workers', () => {
    const first = new Map<string, number>()
    for (let i = 0; i < 400; i++) {
      const d = rankWorkers('m', [worker('a'), worker('b')], cap, none)
      if (d.ok) first.set(d.workers[0].entry.peerId, (first.get(d.workers[0].entry.peerId) ?? 0) + 1)
    }
    expect(first.get('a')).to.be.within(120, 280)
    expect(first.get('b')).to.be.within(120, 280)
  })

  it('prefers a worker it can already pay, unless that one is much worse', () => {
    const payable = (id: string): boolean => id !== 'new'
    const ranked = (list: Array<{ entry: WorkerEntry, offer: WorkerOffer }>): string[] => {
      const d = rankWorkers('m', list, cap, none, noJitter, payable)
      return d.ok ? d.workers.map(w => w.entry.peerId) : []
    }
    // equal workers: the one with an open channel first
    expect(ranked([worker('new'), worker('paid')])).to.deep.equal(['paid', 'new'])
    // a paid worker with three of four slots busy waits long enough to lose to a free new one
    expect(ranked([worker('new'), worker('paid', { offer: { freeSlots: 1 }, entry: { latencyMs: 5_000 } })])).to.deep.equal(['new', 'paid'])
  })
})

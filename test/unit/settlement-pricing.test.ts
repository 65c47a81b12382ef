import { expect } from 'chai'
import { addCommission, costOf, jobCost, removeCommission, withCommission } from '../../src/settlement/pricing.js'
import type { ModelPrice } from '../../src/settlement/pricing.js'

const price: ModelPrice = { promptPerM: 20_000_000n, completionPerM: 80_000_000n, cachedBp: 5_000, reasoningBp: 10_000 }
const usage = (promptTokens: number, completionTokens: number, cachedTokens = 0, reasoningTokens = 0): { promptTokens: number, completionTokens: number, cachedTokens: number, reasoningTokens: number } =>
  ({ promptTokens, completionTokens, cachedTokens, reasoningTokens })

describe('token pricing', () => {
  it('charges prompt and completion tokens at their price per million', () => {
    // 1000 prompt tokens at 20 nanoTON each + 500 completion tokens at 80 each
    expect(costOf(usage(1_000, 500), price)).to.equal(1_000n * 20n + 500n * 80n)
    expect(costOf(usage(0, 0), price)).to.equal(0n)
  })

  it('charges cached and reasoning tokens at their multipliers, counted inside prompt and completion', () => {
    // 1000 prompt of which 400 cached at half price; 500 completion of which 100 reasoning at 1.5x
    const p = { ...price, reasoningBp: 15_000 }
    expect(costOf(usage(1_000, 500, 400, 100), p)).to.equal(600n * 20n + 400n * 10n + 400n * 80n + 100n * 120n)
    // more cached or reasoning tokens than their totals cannot make the cost negative
    expect(costOf(usage(10, 10, 50, 50), p)).to.equal(10n * 10n + 10n * 120n)
  })

  it('rounds a job up to a whole nanoTON once, and never falls as tokens arrive', () => {
    const cheap = { ...price, promptPerM: 1n, completionPerM: 3n }
    expect(costOf(usage(1, 1), cheap)).to.equal(1n)
    let last = 0n
    for (let n = 0; n <= 2_000_000; n += 99_991) {
      const c = costOf(usage(17, n), cheap)
      expect(c >= last, `cost at ${n} tokens fell`).to.equal(true)
      last = c
    }
    expect(costOf(usage(0, 1_000_000), cheap)).to.equal(3n)
  })

  it('adds the proxy commission on top and splits a job between worker and proxy', () => {
    const client = withCommission(price, 1_000)
    expect(client.promptPerM).to.equal(22_000_000n)
    expect(client.completionPerM).to.equal(88_000_000n)
    expect(withCommission({ ...price, completionPerM: 7n }, 1_000).completionPerM, 'rounded up').to.equal(8n)
    // a cap on what the client pays, turned into the worker price it allows, never lets the client pay more
    for (const cap of [88_000_000n, 88_000_007n, 9n, 0n]) {
      expect(addCommission(removeCommission(cap, 1_000), 1_000) <= cap, `cap ${cap}`).to.equal(true)
    }
    expect(removeCommission(88_000_000n, 1_000)).to.equal(80_000_000n)
    const cost = jobCost(usage(1_000, 500), client, price)
    expect(cost.worker).to.equal(60_000n)
    expect(cost.client).to.equal(66_000n)
    expect(cost.commission).to.equal(cost.client - cost.worker)
  })
})

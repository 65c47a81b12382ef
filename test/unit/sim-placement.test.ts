import { expect } from 'chai'
import { roundRobinHost, startSchedule } from '../../simulations/runner.js'

describe('simulator placement and paced starts', () => {
  it('places round-robin over every host, or over all but the bootstrap host when it has one to itself', () => {
    expect(Array.from({ length: 6 }, (_, n) => roundRobinHost(n, 3, false))).to.deep.equal([0, 1, 2, 0, 1, 2])
    expect(Array.from({ length: 6 }, (_, n) => roundRobinHost(n, 3, true))).to.deep.equal([1, 2, 1, 2, 1, 2])
    // one host: nothing to skip
    expect(roundRobinHost(5, 1, true)).to.equal(0)
  })

  it('starts nodes in batches about every 250 ms at the requested rate, each node once', () => {
    const schedule = startSchedule(23, 5)
    // 5 a second: batches of one at 200 ms steps
    expect(schedule.slice(0, 3)).to.deep.equal([{ atMs: 0, from: 0, to: 1 }, { atMs: 200, from: 1, to: 2 }, { atMs: 400, from: 2, to: 3 }])
    expect(schedule.at(-1)?.atMs).to.equal(22 * 200)
    const fast = startSchedule(45, 40)
    // 40 a second: batches of ten, 250 ms apart, the last batch short
    expect(fast.map(b => [b.atMs, b.to - b.from])).to.deep.equal([[0, 10], [250, 10], [500, 10], [750, 10], [1000, 5]])
    const covered = startSchedule(23, 7).flatMap(b => Array.from({ length: b.to - b.from }, (_, i) => b.from + i))
    expect(covered).to.deep.equal(Array.from({ length: 23 }, (_, i) => i))
  })
})

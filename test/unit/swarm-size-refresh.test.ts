import { expect } from 'chai'
import { WORKER_SWARM_SIZE_REFRESH_MAX_MS, WORKER_SWARM_SIZE_REFRESH_MIN_MS } from '../../src/p2p/constants.js'
import { nextSizeRefreshMs } from '../../src/roles/worker/worker-role.js'

describe('a worker\'s refresh of the swarm size it learns from its proxies', () => {
  it('asks again soon while the estimate moves, and backs off while it holds', () => {
    const min = WORKER_SWARM_SIZE_REFRESH_MIN_MS
    // a swarm forming: 40 -> 300 workers
    expect(nextSizeRefreshMs(4 * min, 40, 300)).to.equal(min)
    // steady: doubles, up to the max
    expect(nextSizeRefreshMs(min, 975, 975)).to.equal(2 * min)
    expect(nextSizeRefreshMs(2 * min, 975, 980)).to.equal(4 * min)
    expect(nextSizeRefreshMs(WORKER_SWARM_SIZE_REFRESH_MAX_MS, 975, 975)).to.equal(WORKER_SWARM_SIZE_REFRESH_MAX_MS)
    // a tenth is the threshold; from none, one worker is a move
    expect(nextSizeRefreshMs(2 * min, 1_000, 1_100)).to.equal(4 * min)
    expect(nextSizeRefreshMs(2 * min, 1_000, 1_101)).to.equal(min)
    expect(nextSizeRefreshMs(2 * min, 0, 1)).to.equal(min)
    expect(nextSizeRefreshMs(2 * min, 0, 0)).to.equal(4 * min)
  })
})

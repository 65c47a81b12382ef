import { expect } from 'chai'
import { AdmissionQueue, QueueFullError } from '../../src/ops/admission-queue.js'

describe('admission queue', () => {
  /** A pool of `slots`, taken through the queue and given back with `free()`. */
  function pool (slots: number, depth = 10, maxWaitMs = 2_000): { queue: AdmissionQueue, take: (signal?: AbortSignal, waitMs?: number) => Promise<number>, free: () => void, outcomes: string[] } {
    let free = slots
    let ticket = 0
    const outcomes: string[] = []
    const queue = new AdmissionQueue({ depth, maxWaitMs, what: 'jobs', onWait: (_ms, outcome) => { outcomes.push(outcome) } })
    return {
      queue,
      outcomes,
      take: async (signal, waitMs) => await queue.admit(() => { if (free === 0) return undefined; free--; return ++ticket }, signal, waitMs),
      free: () => { free++; queue.wake() }
    }
  }

  it('admits at once while capacity lasts, then in arrival order as it frees', async () => {
    const p = pool(2)
    expect(await p.take()).to.equal(1)
    expect(await p.take()).to.equal(2)
    const order: string[] = []
    const waiting = ['a', 'b', 'c'].map(async name => { await p.take(); order.push(name) })
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(p.queue.length).to.equal(3)
    p.free()
    p.free()
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(order).to.deep.equal(['a', 'b'])
    p.free()
    await Promise.all(waiting)
    expect(order).to.deep.equal(['a', 'b', 'c'])
    expect(p.queue.length).to.equal(0)
  })

  it('makes a newcomer wait behind those already waiting, even when a slot is free', async () => {
    let free = 0
    const queue = new AdmissionQueue({ depth: 10, maxWaitMs: 2_000, what: 'jobs' })
    const take = async (): Promise<boolean> => await queue.admit(() => { if (free === 0) return undefined; free--; return true })
    let firstDone = false
    const first = take().then(() => { firstDone = true })
    // a slot frees, and before anyone tells the line, a newcomer asks: it must not take the slot
    free = 1
    let newcomerDone = false
    const newcomer = take().then(() => { newcomerDone = true })
    await new Promise(resolve => setTimeout(resolve, 10))
    expect(newcomerDone, 'the newcomer did not overtake').to.equal(false)
    expect(queue.length).to.equal(2)
    queue.wake()
    await first
    expect(firstDone).to.equal(true)
    expect(newcomerDone, 'one slot, one admission').to.equal(false)
    free = 1
    queue.wake()
    await newcomer
  })

  it('refuses when the line is full, and when the wait runs out, with a retry hint', async () => {
    const p = pool(0, 2, 100)
    const a = p.take().catch((e: unknown) => e)
    const b = p.take().catch((e: unknown) => e)
    const full = await p.take().catch((e: unknown) => e)
    expect(full).to.be.instanceOf(QueueFullError)
    expect((full as QueueFullError).reason).to.equal('full')
    expect((full as QueueFullError).retryAfterMs).to.be.above(0)
    const started = Date.now()
    for (const e of [await a, await b]) {
      expect((e as QueueFullError).reason).to.equal('timeout')
    }
    expect(Date.now() - started).to.be.below(1_000)
    expect(p.queue.length).to.equal(0)
    expect(p.outcomes).to.deep.equal(['full', 'timeout', 'timeout'])
  })

  it('leaves the line when its request is aborted, and the next one moves up', async () => {
    const p = pool(0)
    const controller = new AbortController()
    const gone = p.take(controller.signal).catch((e: unknown) => e)
    const next = p.take()
    controller.abort(new Error('client went away'))
    expect(String(await gone)).to.contain('client went away')
    expect(p.queue.length).to.equal(1)
    p.free()
    expect(await next).to.equal(1)
  })
})

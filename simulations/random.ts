/** A seeded generator (mulberry32): the same seed gives the same schedule. */
export class SeededRandom {
  private state: number

  constructor (seed: number) {
    this.state = (seed >>> 0) ^ 0x9e3779b9
  }

  /** Uniform in [0, 1). */
  next (): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0
    let t = this.state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }

  /** Whole number in [lo, hi]. */
  int (lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  /** Exponential gap for a Poisson process of `ratePerSec`, in ms. */
  gapMs (ratePerSec: number): number {
    return -Math.log(1 - this.next()) / ratePerSec * 1000
  }

  pick<T> (items: T[]): T {
    return items[Math.floor(this.next() * items.length)]
  }
}

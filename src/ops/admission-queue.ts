/**
 * A bounded first-in-first-out wait for capacity, as users of an
 * OpenAI-compatible server expect: when nothing is free a request waits its
 * turn instead of failing at once, and only a full queue or a wait past its
 * limit is refused (the caller answers 429 with a Retry-After).
 *
 * Only the request at the head asks whether capacity is free (`tryAdmit`),
 * so a later arrival never overtakes an earlier one. The owner calls
 * `wake()` whenever capacity may have freed (a job ended, a worker announced
 * a free slot); the head asks again, and when it is admitted the next one
 * asks at once.
 */

export type QueueRefusal = 'full' | 'timeout'

export class QueueFullError extends Error {
  readonly reason: QueueRefusal
  /** When trying again makes sense, ms. */
  readonly retryAfterMs: number
  constructor (reason: QueueRefusal, message: string, retryAfterMs: number) {
    super(message)
    this.name = 'QueueFullError'
    this.reason = reason
    this.retryAfterMs = retryAfterMs
  }
}

export interface AdmissionQueueInit {
  /** Requests that may wait at once; one more is refused as 'full'. */
  depth: number
  /** The longest one request waits before it is refused as 'timeout'. */
  maxWaitMs: number
  /** What is queued, for messages ("jobs for a worker", "requests"). */
  what: string
  /** Called with each admitted request's wait (ms), and with each refusal. */
  onWait?: (waitedMs: number, outcome: 'admitted' | QueueRefusal | 'aborted') => void
}

interface Waiter {
  check: () => void
}

export class AdmissionQueue {
  private readonly init: AdmissionQueueInit
  private readonly waiters: Waiter[] = []

  constructor (init: AdmissionQueueInit) {
    if (init.depth < 0 || init.maxWaitMs < 0) throw new RangeError('queue depth and wait must not be negative')
    this.init = init
  }

  /** Requests waiting now. */
  get length (): number {
    return this.waiters.length
  }

  /**
   * Admits at once when nobody waits and `tryAdmit` gives a value; else
   * waits in line (at most `maxWaitMs`, and never past `signal`) until it is
   * at the head and `tryAdmit` gives one. Throws QueueFullError when the line
   * is full or the wait ran out, and the signal's reason when it aborts.
   */
  async admit<T> (tryAdmit: () => T | undefined, signal?: AbortSignal, maxWaitMs = this.init.maxWaitMs): Promise<T> {
    signal?.throwIfAborted()
    if (this.waiters.length === 0) {
      const now = tryAdmit()
      if (now !== undefined) return now
    }
    if (this.waiters.length >= this.init.depth) {
      this.init.onWait?.(0, 'full')
      throw new QueueFullError('full', `${this.waiters.length} ${this.init.what} are already waiting; try again shortly`, Math.min(this.init.maxWaitMs, 1_000))
    }
    const startedMs = performance.now()
    const waitMs = Math.min(maxWaitMs, this.init.maxWaitMs)
    return await new Promise<T>((resolve, reject) => {
      const leave = (): void => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        const i = this.waiters.indexOf(waiter)
        if (i >= 0) this.waiters.splice(i, 1)
        // whoever is at the head now may be admitted
        if (i === 0) this.wake()
      }
      const waiter: Waiter = {
        check: () => {
          let value: T | undefined
          try {
            value = tryAdmit()
          } catch (err) {
            leave()
            reject(err)
            return
          }
          if (value === undefined) return
          leave()
          this.init.onWait?.(performance.now() - startedMs, 'admitted')
          resolve(value)
        }
      }
      const onAbort = (): void => {
        leave()
        this.init.onWait?.(performance.now() - startedMs, 'aborted')
        reject(signal?.reason)
      }
      const timer = setTimeout(() => {
        leave()
        this.init.onWait?.(performance.now() - startedMs, 'timeout')
        reject(new QueueFullError('timeout', `waited ${Math.round(waitMs)} ms in line and nothing came free; try again shortly`, Math.min(this.init.maxWaitMs, 2_000)))
      }, waitMs)
      signal?.addEventListener('abort', onAbort, { once: true })
      this.waiters.push(waiter)
    })
  }

  /** Capacity may have freed: the head asks again (and, if admitted, the next). */
  wake (): void {
    this.waiters[0]?.check()
  }
}

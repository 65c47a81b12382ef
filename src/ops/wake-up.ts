/**
 * Wakes whoever waits for something another task does (a payment arriving).
 * `wait` resolves on the next `wake()`, after a timeout, or rejects when the
 * signal aborts; every `wake()` releases all current waiters and re-arms.
 */
export class WakeUp {
  private woken!: Promise<void>
  private release!: () => void

  constructor () {
    this.arm()
  }

  wake (): void {
    this.release()
    this.arm()
  }

  async wait (ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason
    let timer: ReturnType<typeof setTimeout> | undefined
    let onAbort: (() => void) | undefined
    try {
      await Promise.race([
        this.woken,
        new Promise<void>(resolve => { timer = setTimeout(resolve, ms) }),
        new Promise<void>((_resolve, reject) => {
          onAbort = () => { reject(signal.reason) }
          signal.addEventListener('abort', onAbort, { once: true })
        })
      ])
    } finally {
      clearTimeout(timer)
      if (onAbort != null) signal.removeEventListener('abort', onAbort)
    }
  }

  private arm (): void {
    this.woken = new Promise<void>(resolve => { this.release = resolve })
  }
}

/**
 * A one-shot wake-up for code that waits on something another task does
 * (a payment arriving): `wait` resolves on `wake()`, after a timeout, or
 * rejects when the signal aborts. Replace it after each wake.
 */
export interface WakeUp {
  wake(): void
  /** Resolves on wake() or after `ms`; rejects when `signal` aborts. */
  wait(ms: number, signal: AbortSignal): Promise<void>
}

export function wakeUp (): WakeUp {
  let wake = (): void => {}
  const woken = new Promise<void>(resolve => { wake = resolve })
  return {
    wake: () => { wake() },
    wait: async (ms, signal) => {
      if (signal.aborted) throw signal.reason
      let timer: ReturnType<typeof setTimeout> | undefined
      let onAbort: (() => void) | undefined
      try {
        await Promise.race([
          woken,
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
  }
}

// Node 20 lacks Promise.withResolvers (ES2024), which the libp2p 3 stack calls.
// Node 22+ has it natively; this module is a no-op there.
declare global {
  interface PromiseConstructor {
    withResolvers<T>(): { promise: Promise<T>, resolve: (value: T | PromiseLike<T>) => void, reject: (reason?: unknown) => void }
  }
}

if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers<T> () {
      let resolve!: (value: T | PromiseLike<T>) => void
      let reject!: (reason?: unknown) => void
      const promise = new Promise<T>((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}


// Node 20 has no global WebSocket (Node 22 does), so @libp2p/websockets could
// listen on /ws but not dial it. The `ws` package provides a compatible class.
if (typeof globalThis.WebSocket === 'undefined' && typeof process !== 'undefined' && process.versions?.node != null) {
  const { WebSocket } = await import('ws')
  // A browser WebSocket reports failures as events only; `ws` is an EventEmitter
  // that throws an 'error' with no listener. A dial that gave up (aborted, so
  // its listeners are gone) and then fails to connect would crash the process.
  class EventOnlyWebSocket extends WebSocket {
    constructor (...args: ConstructorParameters<typeof WebSocket>) {
      super(...args)
      this.on('error', () => {})
    }
  }
  Object.defineProperty(globalThis, 'WebSocket', { configurable: true, writable: true, value: EventOnlyWebSocket })
}

export {}

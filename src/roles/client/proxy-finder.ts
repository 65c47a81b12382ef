/**
 * Finds proxies through the Cocoon DHT (`proxy` key) and keeps the list
 * fresh: quickly while none is known, then every minute.
 */
import { proxyKey } from '../../p2p/dht-keys.js'
import type { RoleBehaviour, RoleContext } from '../role.js'

const FAST_INTERVAL_MS = 2_000
const INTERVAL_MS = 60_000
const QUERY_TIMEOUT_MS = 20_000

export interface KnownProxy {
  peerId: string
  addrs: string[]
  foundAtMs: number
}

export class ProxyFinder implements RoleBehaviour {
  private readonly ctx: RoleContext
  private readonly proxies = new Map<string, KnownProxy>()
  private timer?: ReturnType<typeof setTimeout>
  private controller = new AbortController()

  constructor (ctx: RoleContext) {
    this.ctx = ctx
  }

  async start (): Promise<void> {
    this.controller = new AbortController()
    this.schedule(500)
  }

  async stop (): Promise<void> {
    clearTimeout(this.timer)
    this.controller.abort()
  }

  list (): KnownProxy[] {
    return [...this.proxies.values()]
  }

  status (): Record<string, unknown> {
    return { proxies: this.list().map(p => ({ peerId: p.peerId, addrs: p.addrs, foundAt: new Date(p.foundAtMs).toISOString() })) }
  }

  async lookup (): Promise<KnownProxy[]> {
    const key = await proxyKey()
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(QUERY_TIMEOUT_MS)])
    const before = this.proxies.size
    for await (const provider of this.ctx.node.contentRouting.findProviders(key, { signal })) {
      this.proxies.set(provider.id.toString(), {
        peerId: provider.id.toString(),
        addrs: provider.multiaddrs.map(ma => ma.toString()),
        foundAtMs: Date.now()
      })
    }
    if (this.proxies.size > before) this.ctx.console.info(`knows ${this.proxies.size} prox${this.proxies.size === 1 ? 'y' : 'ies'}`)
    return this.list()
  }

  private schedule (delayMs: number): void {
    if (this.controller.signal.aborted) return
    this.timer = setTimeout(() => {
      this.lookup()
        .catch(err => { this.ctx.log('proxy lookup failed - %s', (err as Error).message) })
        .finally(() => { this.schedule(this.proxies.size === 0 ? FAST_INTERVAL_MS : INTERVAL_MS) })
    }, delayMs)
    this.timer.unref?.()
  }
}

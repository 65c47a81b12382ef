/**
 * The proxy role's presence in the swarm: it provides the `proxy` key in the
 * Cocoon DHT so clients can find it. (Worker registry and job routing build on
 * this.)
 */
import { proxyKey } from '../../p2p/dht-keys.js'
import type { RoleBehaviour, RoleContext } from '../role.js'
import type { CID } from 'multiformats/cid'

const PROVIDE_RETRY_MS = 2_000
const PROVIDE_TIMEOUT_MS = 30_000

export class ProxyRole implements RoleBehaviour {
  private readonly ctx: RoleContext
  private key?: CID
  private providedAtMs = 0
  private lastError?: string
  private controller = new AbortController()

  constructor (ctx: RoleContext) {
    this.ctx = ctx
  }

  async start (): Promise<void> {
    this.key = await proxyKey()
    this.controller = new AbortController()
    void this.provideUntilDone(this.key)
  }

  async stop (): Promise<void> {
    this.controller.abort()
    if (this.key != null) await this.ctx.node.services.dht.cancelReprovide(this.key).catch(() => {})
  }

  status (): Record<string, unknown> {
    return { providesProxyKey: this.providedAtMs > 0, providedAt: this.providedAtMs > 0 ? new Date(this.providedAtMs).toISOString() : null, lastError: this.lastError ?? null }
  }

  /** Publishes the record once the routing table has peers; the DHT re-provides it from then on. */
  private async provideUntilDone (key: CID): Promise<void> {
    const signal = this.controller.signal
    while (!signal.aborted) {
      try {
        const timeout = AbortSignal.any([signal, AbortSignal.timeout(PROVIDE_TIMEOUT_MS)])
        await this.ctx.node.contentRouting.provide(key, { signal: timeout })
        this.providedAtMs = Date.now()
        this.lastError = undefined
        this.ctx.console.info('listed as a proxy in the DHT')
        return
      } catch (err) {
        if (signal.aborted) return
        this.lastError = (err as Error).message
        this.ctx.log('provide proxy key failed, retrying - %s', this.lastError)
        await new Promise(resolve => setTimeout(resolve, PROVIDE_RETRY_MS).unref())
      }
    }
  }
}

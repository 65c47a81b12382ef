/**
 * DHT provider records this node keeps published: the `proxy` key for a
 * proxy, `model:<name>` for each model a worker serves. Each key is provided
 * once the routing table has peers (retrying until then) and re-provided by
 * the DHT from then on; removing a key cancels its re-provide, so the record
 * lapses when its validity ends.
 */
import type { CocoonLibp2p } from './node.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { Logger } from '@libp2p/interface'
import type { CID } from 'multiformats/cid'

const PROVIDE_RETRY_MS = 2_000
const PROVIDE_TIMEOUT_MS = 30_000

interface ProvidedKey {
  key: CID
  controller: AbortController
  providedAtMs: number
  lastError?: string
}

export interface ProvidedKeyStatus {
  name: string
  provided: boolean
  providedAt: string | null
  lastError: string | null
}

export class ProvidedKeys {
  private readonly node: Pick<CocoonLibp2p, 'contentRouting' | 'services'>
  private readonly log: Logger
  private readonly console?: ConsoleLog
  private readonly keys = new Map<string, ProvidedKey>()

  constructor (node: Pick<CocoonLibp2p, 'contentRouting' | 'services'>, log: Logger, console?: ConsoleLog) {
    this.node = node
    this.log = log
    this.console = console
  }

  has (name: string): boolean {
    return this.keys.has(name)
  }

  /** Starts providing `key` under a display name (no-op when already provided). */
  add (name: string, key: CID): void {
    if (this.keys.has(name)) return
    const entry: ProvidedKey = { key, controller: new AbortController(), providedAtMs: 0 }
    this.keys.set(name, entry)
    void this.provideUntilDone(name, entry)
  }

  /** Stops providing a key: no more retries or re-provides. */
  async remove (name: string): Promise<void> {
    const entry = this.keys.get(name)
    if (entry == null) return
    this.keys.delete(name)
    entry.controller.abort()
    await this.node.services.dht.cancelReprovide(entry.key).catch(() => {})
  }

  async stop (): Promise<void> {
    await Promise.all([...this.keys.keys()].map(async name => { await this.remove(name) }))
  }

  status (): ProvidedKeyStatus[] {
    return [...this.keys.entries()].map(([name, k]) => ({
      name,
      provided: k.providedAtMs > 0,
      providedAt: k.providedAtMs > 0 ? new Date(k.providedAtMs).toISOString() : null,
      lastError: k.lastError ?? null
    }))
  }

  private async provideUntilDone (name: string, entry: ProvidedKey): Promise<void> {
    const signal = entry.controller.signal
    while (!signal.aborted) {
      try {
        await this.node.contentRouting.provide(entry.key, { signal: AbortSignal.any([signal, AbortSignal.timeout(PROVIDE_TIMEOUT_MS)]) })
        entry.providedAtMs = Date.now()
        entry.lastError = undefined
        this.console?.info(`listed as a provider of ${name} in the DHT`)
        return
      } catch (err) {
        if (signal.aborted) return
        entry.lastError = (err as Error).message
        this.log('provide %s failed, retrying - %s', name, entry.lastError)
        await new Promise(resolve => setTimeout(resolve, PROVIDE_RETRY_MS).unref())
      }
    }
  }
}

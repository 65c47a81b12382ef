/**
 * Public-swarm rendezvous: Cocoon nodes that serve the Cocoon DHT publish a
 * provider record for one well-known key in the public Amino DHT; every Cocoon
 * node looks that key up and dials what it finds. Once connected, identify
 * shows `/cocoon/kad/1.0.0` and the peers meet in the private Cocoon DHT.
 * Providers that turn out not to speak Cocoon are disconnected.
 */
import { COCOON_KAD_PROTOCOL, RENDEZVOUS_FAST_INTERVAL_MS, RENDEZVOUS_INITIAL_DELAY_MS, RENDEZVOUS_INTERVAL_MS, RENDEZVOUS_MAX_DIALS_PER_ROUND, RENDEZVOUS_MIN_COCOON_PEERS, RENDEZVOUS_QUERY_TIMEOUT_MS } from './constants.js'
import { rendezvousKey } from './dht-keys.js'
import type { KadDHT } from '@libp2p/kad-dht'
import type { AbortOptions, Connection, Logger, PeerId, PeerInfo, PeerStore } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface RendezvousHost {
  peerId: PeerId
  peerStore: PeerStore
  services: { amino?: KadDHT }
  dial(peer: PeerId | Multiaddr[], options?: AbortOptions): Promise<Connection>
  getConnections(peer?: PeerId): Connection[]
  hangUp(peer: PeerId): Promise<void>
}

export interface RendezvousInit {
  network: string
  /** Publish our own record (nodes that serve the Cocoon DHT). */
  provide: boolean
  log: Logger
  /** Overrides for the round schedule, in ms (tests and simulations). */
  initialDelayMs?: number
  fastIntervalMs?: number
  intervalMs?: number
}

export interface RendezvousStatus {
  rounds: number
  lastRoundAtMs: number
  providersSeen: number
  cocoonPeersMet: number
  lastError?: string
}

export class RendezvousService {
  private readonly host: RendezvousHost
  private readonly init: RendezvousInit
  private timer?: ReturnType<typeof setTimeout>
  private controller = new AbortController()
  private running = false
  private readonly met = new Map<string, PeerId>()
  readonly status: RendezvousStatus = { rounds: 0, lastRoundAtMs: 0, providersSeen: 0, cocoonPeersMet: 0 }

  constructor (host: RendezvousHost, init: RendezvousInit) {
    this.host = host
    this.init = init
  }

  start (): void {
    if (this.host.services.amino == null) {
      throw new Error('rendezvous needs the Amino DHT service (public network only)')
    }
    this.controller = new AbortController()
    this.running = true
    this.schedule(this.init.initialDelayMs ?? RENDEZVOUS_INITIAL_DELAY_MS)
  }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
    this.controller.abort()
  }

  /** One publish-and-find round. Returns the Cocoon peers newly connected. */
  async round (): Promise<PeerId[]> {
    const amino = this.host.services.amino
    if (amino == null) return []
    const key = await rendezvousKey(this.init.network)
    const signal = AbortSignal.any([this.controller.signal, AbortSignal.timeout(RENDEZVOUS_QUERY_TIMEOUT_MS)])
    this.status.rounds++
    this.status.lastRoundAtMs = Date.now()
    if (this.init.provide) {
      try {
        for await (const _ of amino.provide(key, { signal })) {}
      } catch (err) {
        this.status.lastError = `provide: ${(err as Error).message}`
        this.init.log('rendezvous provide failed - %s', (err as Error).message)
      }
    }
    const candidates = new Map<string, PeerInfo>()
    try {
      for await (const event of amino.findProviders(key, { signal })) {
        if (event.name !== 'PROVIDER') continue
        for (const provider of event.providers) {
          if (provider.id.equals(this.host.peerId)) continue
          candidates.set(provider.id.toString(), provider)
        }
        if (candidates.size >= RENDEZVOUS_MAX_DIALS_PER_ROUND) break
      }
    } catch (err) {
      this.status.lastError = `find: ${(err as Error).message}`
      this.init.log('rendezvous lookup failed - %s', (err as Error).message)
    }
    this.status.providersSeen = Math.max(this.status.providersSeen, candidates.size)
    const met: PeerId[] = []
    await Promise.all([...candidates.values()].map(async provider => {
      try {
        if (this.host.getConnections(provider.id).length === 0) {
          await this.host.dial(provider.multiaddrs.length > 0 ? provider.multiaddrs : provider.id, { signal })
        }
        if (await this.speaksCocoon(provider.id)) {
          met.push(provider.id)
          this.met.set(provider.id.toString(), provider.id)
        } else {
          await this.host.hangUp(provider.id)
        }
      } catch (err) {
        this.init.log('rendezvous dial %p failed - %s', provider.id, (err as Error).message)
      }
    }))
    this.status.cocoonPeersMet += met.length
    return met
  }

  private async speaksCocoon (peer: PeerId): Promise<boolean> {
    // identify runs right after the connection opens; give it a moment
    for (let i = 0; i < 20; i++) {
      try {
        const stored = await this.host.peerStore.get(peer)
        if (stored.protocols.includes(COCOON_KAD_PROTOCOL)) return true
        if (stored.protocols.length > 0) return false
      } catch {}
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return false
  }

  private schedule (delayMs: number): void {
    if (!this.running) return
    this.timer = setTimeout(() => {
      this.round()
        .catch(err => { this.init.log.error('rendezvous round failed - %e', err) })
        .finally(() => {
          const few = this.cocoonPeerCount() < RENDEZVOUS_MIN_COCOON_PEERS
          this.schedule(few ? (this.init.fastIntervalMs ?? RENDEZVOUS_FAST_INTERVAL_MS) : (this.init.intervalMs ?? RENDEZVOUS_INTERVAL_MS))
        })
    }, delayMs)
    this.timer.unref?.()
  }

  /** Cocoon peers met through rendezvous that are still connected. */
  cocoonPeerCount (): number {
    let count = 0
    for (const peer of this.met.values()) {
      if (this.host.getConnections(peer).length > 0) count++
    }
    return count
  }
}

/**
 * libp2p dials the bootstrap peers once, at start. A node whose dial failed
 * (a loaded bootstrap node lets the noise handshake time out) or that later
 * lost every connection would hear of nobody again: its DHT has no peer to
 * ask and gossip no peer to hear from. (Seen in a 300-node simulation: eight
 * of ten clients whose one bootstrap dial timed out never found a proxy.)
 *
 * So while the node has no connection, or its DHT routing table is empty (it
 * is connected only to peers that do not serve the DHT), the bootstrap peers
 * are dialled again: the first that answers is enough, presence and the DHT
 * lead on from there. A bootstrap peer that is connected while the routing
 * table stays empty was never identified as a DHT server (identify timed out
 * on a loaded node, and libp2p does not retry it): that connection is closed
 * and dialled afresh, since dialling a connected peer returns the old
 * connection. Rounds that leave the node isolated back off, doubling up to
 * REDIAL_BACKOFF_MAX_MS, with jitter so that nodes isolated together do not
 * retry together.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { DIAL_TIMEOUT_MS, P2P_MULTIADDR_CODE } from './constants.js'
import type { Logger } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** How often isolation is checked (a node with no connection gets no event to react to). */
const CHECK_INTERVAL_MS = 5_000
/** The first wait after a failed round, doubling per failure up to the max. */
const REDIAL_BACKOFF_MS = 2_000
const REDIAL_BACKOFF_MAX_MS = 60_000
/**
 * A bootstrap connection younger than this is left alone even while the
 * routing table is empty: identify may still be running on a loaded peer.
 * Closing it then (as this did at 2-5 s) made a joining swarm of a thousand
 * nodes re-handshake with its bootstrap node over and over, until the
 * bootstrap's accept queue stayed full.
 */
const IDENTIFY_GRACE_MS = 30_000

export interface BootstrapRedialHost {
  getConnections(): Array<{ remotePeer: { toString(): string }, timeline: { open: number } }>
  dial(addr: Multiaddr, options: { signal: AbortSignal }): Promise<unknown>
  hangUp(addr: Multiaddr): Promise<void>
}

export interface BootstrapRedialInit {
  /** Bootstrap multiaddrs; only those with /p2p/ are dialled. */
  bootstrap: string[]
  log: Logger
  /** Peers in the DHT routing table; 0 counts as isolated too. */
  routingTableSize?: () => number
  /** Period of the check, and the first wait after a failed round (tests shorten them). */
  checkIntervalMs?: number
  redialBackoffMs?: number
  /** How long a new bootstrap connection has to fill the routing table before it is closed and dialled afresh. */
  identifyGraceMs?: number
  random?: () => number
}

export class BootstrapRedial {
  private readonly host: BootstrapRedialHost
  private readonly init: BootstrapRedialInit
  private readonly bootstrap: Multiaddr[]
  /** The bootstrap peers' ids (from the addresses that name one). */
  readonly peerIds: ReadonlySet<string>
  private readonly firstBackoffMs: number
  private backoffMs: number
  private nextAtMs = 0
  private redialing = false
  private timer?: ReturnType<typeof setInterval>

  constructor (host: BootstrapRedialHost, init: BootstrapRedialInit) {
    this.host = host
    this.init = init
    this.firstBackoffMs = init.redialBackoffMs ?? REDIAL_BACKOFF_MS
    this.backoffMs = this.firstBackoffMs
    this.bootstrap = init.bootstrap.flatMap(a => {
      try { return [multiaddr(a)] } catch { return [] }
    }).filter(ma => ma.getComponents().some(c => c.code === P2P_MULTIADDR_CODE))
    this.peerIds = new Set(this.bootstrap.flatMap(ma => ma.getComponents().filter(c => c.code === P2P_MULTIADDR_CODE).map(c => c.value ?? '')))
  }

  start (): void {
    if (this.bootstrap.length === 0) return
    this.timer = setInterval(() => { this.check() }, this.init.checkIntervalMs ?? CHECK_INTERVAL_MS)
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Whether this node has nobody to ask: no connection, or no DHT server among them. */
  isolated (): boolean {
    return this.host.getConnections().length === 0 || this.init.routingTableSize?.() === 0
  }

  private check (): void {
    if (this.timer == null || this.redialing) return
    if (!this.isolated()) {
      this.backoffMs = this.firstBackoffMs
      return
    }
    if (Date.now() < this.nextAtMs) return
    const graceMs = this.init.identifyGraceMs ?? IDENTIFY_GRACE_MS
    const bootstrapConns = this.host.getConnections().filter(c => this.peerIds.has(c.remotePeer.toString()))
    // identify may still be filling the routing table over a young connection
    if (bootstrapConns.some(c => Date.now() - c.timeline.open < graceMs)) return
    this.redialing = true
    // a round counts as failed until a check finds the node no longer isolated
    this.nextAtMs = Date.now() + Math.round(this.backoffMs * (0.5 + (this.init.random ?? Math.random)()))
    this.backoffMs = Math.min(REDIAL_BACKOFF_MAX_MS, this.backoffMs * 2)
    const connected = new Set(bootstrapConns.map(c => c.remotePeer.toString()))
    this.init.log('isolated: dialling the bootstrap peers again')
    Promise.any(this.bootstrap.map(async ma => {
      const id = ma.getComponents().find(c => c.code === P2P_MULTIADDR_CODE)?.value ?? ''
      if (connected.has(id)) await this.host.hangUp(ma)
      return this.host.dial(ma, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
    }))
      .then(() => { this.init.log('reconnected to a bootstrap peer') }, () => { this.init.log('could not reach any bootstrap peer') })
      .finally(() => { this.redialing = false })
  }
}

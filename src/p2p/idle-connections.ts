/**
 * Closes connections this node dialled that nothing uses any more. A DHT
 * query, a provide, an attestation challenge or a job each connect on demand,
 * and libp2p keeps a connection open until the connection manager prunes it
 * above its limit: in a 1 000-node swarm every worker stayed connected to
 * every DHT server its provide had touched, each proxy to every worker it had
 * challenged, the proxies sat at their limit, and pruning fought the workers'
 * links. So a connection this node opened (outbound: the peer that dialled
 * owns the decision) with no stream but background ones (gossipsub, identify,
 * ping) for IDLE_CONNECTION_MS (5 min) is closed, unless `keep` protects its peer
 * (bootstrap peers, a worker's proxy links).
 */
import type { Connection, Logger } from '@libp2p/interface'

/**
 * A dialled connection unused this long is closed. Not shorter: a proxy's
 * connection to a worker it routes to now and then is worth keeping, since a
 * new one costs a handshake on the job's path (with a 60 s limit, time to
 * first token in the 100-node steady scenario grew from 0.2 s to over 1 s as
 * the connections of the swarm's forming were closed and dialled again).
 */
export const IDLE_CONNECTION_MS = 5 * 60_000
const CHECK_INTERVAL_MS = 10_000
/** Streams that live as long as the connection and do not count as use. */
const BACKGROUND_PROTOCOLS = ['/meshsub/', '/floodsub/', '/ipfs/id/', '/ipfs/ping/']

export interface IdleConnectionsInit {
  /** Peers whose connections stay open however idle. */
  keep: (peerId: string) => boolean
  log: Logger
  idleMs?: number
  checkIntervalMs?: number
  now?: () => number
}

export class IdleConnections {
  private readonly host: { getConnections(): Connection[] }
  private readonly init: IdleConnectionsInit
  private readonly now: () => number
  private readonly lastUsed = new Map<string, number>()
  private timer?: ReturnType<typeof setInterval>
  /** Connections closed as idle since start. */
  closed = 0

  constructor (host: { getConnections(): Connection[] }, init: IdleConnectionsInit) {
    this.host = host
    this.init = init
    this.now = init.now ?? Date.now
  }

  start (): void {
    this.timer = setInterval(() => { this.check() }, this.init.checkIntervalMs ?? CHECK_INTERVAL_MS)
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  check (): void {
    const nowMs = this.now()
    const idleMs = this.init.idleMs ?? IDLE_CONNECTION_MS
    const open = new Set<string>()
    for (const conn of this.host.getConnections()) {
      open.add(conn.id)
      if (conn.direction !== 'outbound' || conn.status !== 'open') continue
      if (conn.streams.some(s => !BACKGROUND_PROTOCOLS.some(p => s.protocol?.startsWith(p)))) {
        this.lastUsed.set(conn.id, nowMs)
        continue
      }
      const peer = conn.remotePeer.toString()
      if (this.init.keep(peer)) continue
      const since = this.lastUsed.get(conn.id) ?? conn.timeline.open
      if (nowMs - since < idleMs) continue
      this.closed++
      this.lastUsed.delete(conn.id)
      this.init.log('closing the idle connection to %s', peer)
      conn.close().catch(err => { conn.abort(err as Error) })
    }
    for (const id of this.lastUsed.keys()) if (!open.has(id)) this.lastUsed.delete(id)
  }
}

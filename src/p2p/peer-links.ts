/**
 * Keeps this node directly connected to the peers of one role it hears of
 * through presence gossip, up to a limit: workers link to proxies, proxies to
 * workers. Capacity announcements are published without subscribing to the
 * topic, so they reach the proxies a worker is connected to (which forward
 * them through their own mesh); attestation challenges and jobs use the same
 * connections. Whichever side hears of the other first makes the link.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { CocoonLibp2p } from './node.js'
import type { PeerDirectory, PeerRecord } from './peer-directory.js'
import type { Role } from './protos/node.js'
import type { Logger } from '@libp2p/interface'

const DIAL_TIMEOUT_MS = 10_000

export class PeerLinks {
  private readonly node: CocoonLibp2p
  private readonly directory: PeerDirectory
  private readonly role: Role
  private readonly max: number
  private readonly log: Logger
  private readonly dialing = new Set<string>()
  private readonly onUpdate = (evt: CustomEvent<PeerRecord>): void => { this.link(evt.detail) }

  constructor (node: CocoonLibp2p, directory: PeerDirectory, init: { role: Role, max: number, log: Logger }) {
    this.node = node
    this.directory = directory
    this.role = init.role
    this.max = init.max
    this.log = init.log
  }

  start (): void {
    this.directory.addEventListener('peer:updated', this.onUpdate)
    for (const record of this.directory.list()) this.link(record)
  }

  stop (): void {
    this.directory.removeEventListener('peer:updated', this.onUpdate)
  }

  /** Peers of the role this node is connected to now. */
  linked (): string[] {
    const peers = new Set<string>()
    for (const c of this.node.getConnections()) {
      const id = c.remotePeer.toString()
      if (this.directory.get(id)?.role === this.role) peers.add(id)
    }
    return [...peers]
  }

  private link (record: PeerRecord): void {
    if (record.role !== this.role || this.dialing.has(record.peerId) || record.peerId === this.node.peerId.toString()) return
    const peer = peerIdFromString(record.peerId)
    if (this.node.getConnections(peer).length > 0 || this.linked().length >= this.max) return
    const addrs = record.addrs.flatMap(a => {
      try { return [multiaddr(a).encapsulate(`/p2p/${record.peerId}`)] } catch { return [] }
    })
    this.dialing.add(record.peerId)
    this.node.dial(addrs.length > 0 ? addrs : peer, { signal: AbortSignal.timeout(DIAL_TIMEOUT_MS) })
      .then(() => { this.log('linked to %s', record.peerId) })
      .catch(err => { this.log('could not link to %s - %s', record.peerId, (err as Error).message) })
      .finally(() => { this.dialing.delete(record.peerId) })
  }
}

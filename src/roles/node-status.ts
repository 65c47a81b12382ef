/**
 * What `cocoon status` and the admin endpoint report about a running node:
 * its addresses, peers (with the role each announced), DHT and gossip state,
 * the role's own status and the payment channels'.
 */
import { COCOON_KAD_PROTOCOL } from '../p2p/constants.js'
import { packageVersion } from '../package-info.js'
import { roleName } from './profiles.js'
import type { NodeConfig } from '../config/schema.js'
import type { CocoonLibp2p } from '../p2p/node.js'
import type { PeerDirectory } from '../p2p/peer-directory.js'
import type { RendezvousService } from '../p2p/rendezvous.js'
import type { NodeSettlement } from '../settlement/node-settlement.js'
import type { RoleBehaviour } from './role.js'

export interface PeerStatus {
  peerId: string
  role: string
  direction: string
  remoteAddr: string
  openedAt: string
}

export interface NodeStatus {
  peerId: string
  role: string
  network: string
  version: string
  pid: number
  startedAt: string
  uptimeSec: number
  addrs: string[]
  peers: PeerStatus[]
  knownPeers: Array<{ peerId: string, role: string, version: string, lastSeen: string, source: string }>
  dht: { protocol: string, mode: string, routingTableSize: number }
  amino: { routingTableSize: number, rendezvous: unknown } | null
  topics: Array<{ topic: string, subscribers: number }>
  roleStatus: Record<string, unknown>
  settlement: Awaited<ReturnType<NodeSettlement['status']>> | null
}

/** The parts of a running node its status is read from. */
export interface StatusParts {
  config: NodeConfig
  node: CocoonLibp2p
  directory: PeerDirectory
  startedAtMs: number
  addrs: string[]
  rendezvous?: RendezvousService
  role: RoleBehaviour
  settlement?: NodeSettlement
}

export async function nodeStatus (n: StatusParts): Promise<NodeStatus> {
  const dht = n.node.services.dht as unknown as { routingTable?: { size: number }, getMode(): string }
  const amino = n.node.services.amino as unknown as { routingTable?: { size: number } } | undefined
  const pubsub = n.node.services.pubsub
  const roleOf = (peerId: string): string => {
    const record = n.directory.get(peerId)
    return record == null ? 'unknown' : roleName(record.role)
  }
  // one line per peer: simultaneous dials can leave two connections to one peer
  const byPeer = new Map<string, PeerStatus>()
  for (const c of n.node.getConnections()) {
    const peerId = c.remotePeer.toString()
    if (byPeer.has(peerId)) continue
    byPeer.set(peerId, {
      peerId,
      role: roleOf(peerId),
      direction: c.direction,
      remoteAddr: c.remoteAddr.toString(),
      openedAt: new Date(c.timeline.open).toISOString()
    })
  }
  return {
    peerId: n.node.peerId.toString(),
    role: n.config.role,
    network: n.config.network,
    version: packageVersion(),
    pid: process.pid,
    startedAt: new Date(n.startedAtMs).toISOString(),
    uptimeSec: Math.round((Date.now() - n.startedAtMs) / 1000),
    addrs: n.addrs,
    peers: [...byPeer.values()],
    knownPeers: n.directory.list().map(r => ({
      peerId: r.peerId, role: roleName(r.role), version: r.version, lastSeen: new Date(r.lastSeenMs).toISOString(), source: r.source
    })),
    dht: { protocol: COCOON_KAD_PROTOCOL, mode: dht.getMode(), routingTableSize: dht.routingTable?.size ?? 0 },
    amino: amino == null ? null : { routingTableSize: amino.routingTable?.size ?? 0, rendezvous: n.rendezvous?.status ?? null },
    topics: pubsub.getTopics().map(topic => ({ topic, subscribers: pubsub.getSubscribers(topic).length })),
    roleStatus: n.role.status(),
    settlement: n.settlement == null ? null : await n.settlement.status()
  }
}

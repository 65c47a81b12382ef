import { Role } from '../gen/node.pb.js'
import type { RoleName } from '../config/role-names.js'

/** What each role needs from the node core. */
export interface RoleProfile {
  wireRole: Role
  /**
   * Answer DHT queries. Bootstrap nodes and proxies do; workers and clients
   * only ask (and workers still provide their model keys): routing-table
   * upkeep in server mode dials the whole table, so with every worker a
   * server the swarm became a full mesh.
   */
  dhtServer: boolean
  /** Serve circuit-relay reservations for peers behind NAT. */
  relayServer: boolean
  /** Publish the public-network rendezvous record. */
  provideRendezvous: boolean
  /** Send presence heartbeats (the roles others must find); the others only listen. */
  presenceHeartbeat: boolean
  /**
   * Take presence gossip at all. Workers do not: they need a few proxies,
   * which the DHT and /cocoon/info name, not a record of every publisher;
   * subscribed, every worker was a presence gossip peer of its proxies and
   * the bootstrap node, and checking, forwarding and gossiping presence to
   * 975 workers was a third of a 1 000-node swarm's CPU.
   */
  presenceListen: boolean
}

export const ROLE_PROFILES: Record<RoleName, RoleProfile> = {
  bootstrap: { wireRole: Role.BOOTSTRAP, dhtServer: true, relayServer: true, provideRendezvous: true, presenceHeartbeat: true, presenceListen: true },
  worker: { wireRole: Role.WORKER, dhtServer: false, relayServer: false, provideRendezvous: true, presenceHeartbeat: false, presenceListen: false },
  proxy: { wireRole: Role.PROXY, dhtServer: true, relayServer: false, provideRendezvous: true, presenceHeartbeat: true, presenceListen: true },
  // clients only ask: they are not listed in the DHT and do not route for others
  client: { wireRole: Role.CLIENT, dhtServer: false, relayServer: false, provideRendezvous: false, presenceHeartbeat: false, presenceListen: true }
}

export function roleName (role: Role): string {
  switch (role) {
    case Role.BOOTSTRAP: return 'bootstrap'
    case Role.WORKER: return 'worker'
    case Role.PROXY: return 'proxy'
    case Role.CLIENT: return 'client'
    default: return 'unknown'
  }
}

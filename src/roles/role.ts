import type { NodeConfig } from '../config/schema.js'
import type { InfoService } from '../p2p/info.js'
import type { PeerDirectory } from '../p2p/peer-directory.js'
import type { CocoonLibp2p } from '../p2p/node.js'
import type { NodeMetrics } from '../p2p/metrics.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { NodeSettlement } from '../settlement/node-settlement.js'
import type { ComponentLogger, Logger, PrivateKey } from '@libp2p/interface'

/** What a role adds on top of the node core. */
export interface RoleBehaviour {
  start(): Promise<void>
  stop(): Promise<void>
  /** Role-specific part of /status. */
  status(): Record<string, unknown>
  /** The encoded capacity announcement handed out with attestation evidence (workers). */
  capacity?(): Uint8Array | undefined
  /** Proxies: how many workers they list or are checking (stated in presence). */
  workersKnown?(): number
  /** Connections to keep open however idle (a worker's proxy links). */
  keepConnection?(peerId: string): boolean
  /** Workers: a peer's attestation challenge was answered. */
  challengedBy?(peerId: string): void
}

export interface RoleContext {
  config: NodeConfig
  node: CocoonLibp2p
  directory: PeerDirectory
  /** /cocoon/info: who a peer is (and, from a proxy, how many workers it lists). */
  info: InfoService
  metrics: NodeMetrics
  log: Logger
  logger: ComponentLogger
  console: ConsoleLog
  /** The node's libp2p key (workers sign job results with it). */
  privateKey: PrivateKey
  /** Payment channels, when settlement is on. */
  settlement?: NodeSettlement
}

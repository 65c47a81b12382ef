import type { PeerDirectory } from '../p2p/peer-directory.js'
import type { CocoonLibp2p } from '../p2p/node.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { Logger } from '@libp2p/interface'

/** What a role adds on top of the node core. */
export interface RoleBehaviour {
  start(): Promise<void>
  stop(): Promise<void>
  /** Role-specific part of /status. */
  status(): Record<string, unknown>
}

export interface RoleContext {
  node: CocoonLibp2p
  directory: PeerDirectory
  log: Logger
  console: ConsoleLog
}

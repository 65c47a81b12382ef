/**
 * Runs one node in one role: identity, libp2p node, presence and info
 * services, the role's own behaviour, public rendezvous, the admin endpoint
 * and a node file in the data dir. `stop()` shuts it all down in order.
 */
import '../polyfills.js'
import { Registry } from 'prom-client'
import { SHUTDOWN_TIMEOUT_MS } from '../p2p/constants.js'
import { loadOrCreateIdentity } from '../p2p/identity.js'
import { InfoService } from '../p2p/info.js'
import { BootstrapRedial } from '../p2p/bootstrap-redial.js'
import { IdleConnections } from '../p2p/idle-connections.js'
import { NodeMetrics } from '../p2p/metrics.js'
import { NETWORK_PRESETS } from '../p2p/networks.js'
import { createCocoonNode } from '../p2p/node.js'
import { rememberListenPorts, stickyListen } from '../p2p/listen-ports.js'
import { GraylistGuard, PeerBans } from '../p2p/peer-penalties.js'
import { gossipScore, SCORE_THRESHOLDS } from '../p2p/gossip.js'
import { PeerDirectory } from '../p2p/peer-directory.js'
import { quietPrefixLogger } from '../p2p/quiet-logger.js'
import { PresenceService } from '../p2p/presence.js'
import { RendezvousService } from '../p2p/rendezvous.js'
import { packageVersion } from '../package-info.js'
import { startAdminServer } from '../ops/admin-server.js'
import { createConsoleLog, enableDebugLogs } from '../ops/console-log.js'
import { loadOrCreateAdminToken, removeNodeFile, writeNodeFile } from '../ops/node-file.js'
import { ClientRole } from './client/client-role.js'
import { useNodeCrypto } from './node-crypto.js'
import { ROLE_PROFILES, roleName } from './profiles.js'
import { ProxyRole } from './proxy/proxy-role.js'
import { setupTee, setupVerifier } from './tee-setup.js'
import { WorkerRole } from './worker/worker-role.js'
import { nodeStatus } from './node-status.js'
import type { NodeStatus } from './node-status.js'
import { AttestService } from '../tee/attest-service.js'
import type { NodeTee } from './tee-setup.js'
import type { NodeConfig } from '../config/schema.js'
import type { CocoonLibp2p } from '../p2p/node.js'
import type { AdminServer } from '../ops/admin-server.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { RoleBehaviour, RoleContext } from './role.js'
import type { Devnet } from '../settlement/chain/index.js'
import { NodeSettlement } from '../settlement/node-settlement.js'
import type { ComponentLogger, Logger, PeerId } from '@libp2p/interface'

useNodeCrypto()

export interface StartNodeOptions {
  /** Where lifecycle lines go (stderr by default). */
  consoleWrite?: (line: string) => void
  /** Prefix for debug logs, handy with several nodes in one process. */
  logPrefix?: string
  /** Amino bootstrap peers for the public network, replacing the well-known list. */
  aminoBootstrap?: string[]
  /** Collect Prometheus metrics (default true). */
  metrics?: boolean
  /** Rendezvous schedule overrides (public network), in ms. */
  rendezvous?: { initialDelayMs?: number, fastIntervalMs?: number, intervalMs?: number }
  /** A devnet chain shared by the nodes of this process (settlement on the devnet). */
  devnet?: Devnet
  /** Peers this node refuses to connect to, asked on every connection (network partitions in the simulator). */
  denyPeer?: (peerId: string) => boolean
}

export class RunningNode {
  readonly config: NodeConfig
  readonly node: CocoonLibp2p
  readonly directory: PeerDirectory
  readonly presence: PresenceService
  readonly info: InfoService
  readonly metrics: NodeMetrics
  readonly role: RoleBehaviour
  readonly rendezvous?: RendezvousService
  /** Attestation pieces (workers and proxies). */
  readonly tee?: NodeTee
  /** Payment channels, when settlement is on. */
  readonly settlement?: NodeSettlement
  private readonly attestService?: AttestService
  readonly startedAtMs: number
  adminUrl: string | null = null
  private admin?: AdminServer
  private readonly console: ConsoleLog
  private readonly log: Logger
  private stopping?: Promise<void>
  private expiryTimer?: ReturnType<typeof setInterval>
  private readonly redial: BootstrapRedial
  private readonly idle: IdleConnections
  private readonly graylist: GraylistGuard
  private peerLogTimer?: ReturnType<typeof setTimeout>
  private lastPeerCount = -1

  constructor (init: {
    config: NodeConfig, node: CocoonLibp2p, directory: PeerDirectory, presence: PresenceService, info: InfoService,
    metrics: NodeMetrics, role: RoleBehaviour, rendezvous?: RendezvousService, console: ConsoleLog, log: Logger, startedAtMs: number,
    tee?: NodeTee, attestService?: AttestService, settlement?: NodeSettlement, bans: PeerBans
  }) {
    this.config = init.config
    this.node = init.node
    this.directory = init.directory
    this.presence = init.presence
    this.info = init.info
    this.metrics = init.metrics
    this.role = init.role
    this.rendezvous = init.rendezvous
    this.console = init.console
    this.log = init.log
    this.startedAtMs = init.startedAtMs
    this.tee = init.tee
    this.attestService = init.attestService
    this.settlement = init.settlement
    const dht = this.node.services.dht as unknown as { routingTable?: { size: number } }
    this.redial = new BootstrapRedial(this.node, {
      bootstrap: this.config.bootstrap,
      log: this.log,
      routingTableSize: () => dht.routingTable?.size ?? 0
    })
    this.graylist = new GraylistGuard({
      score: peer => gossipScore(this.node.services.pubsub, peer),
      threshold: SCORE_THRESHOLDS.graylistThreshold,
      peers: () => this.node.getPeers(),
      hangUp: async peer => { await this.node.hangUp(peer) },
      bans: init.bans,
      spare: peer => this.redial.peerIds.has(peer),
      log: this.log
    })
    this.idle = new IdleConnections(this.node, {
      keep: peer => this.redial.peerIds.has(peer) || (this.role.keepConnection?.(peer) ?? false),
      log: this.log
    })
  }

  get peerId (): PeerId {
    return this.node.peerId
  }

  get stopped (): boolean {
    return this.stopping != null
  }

  /** Full multiaddrs (with /p2p/) the node listens on. */
  addrs (): string[] {
    return this.node.getMultiaddrs().map(ma => ma.toString())
  }

  async start (): Promise<void> {
    await this.info.start()
    this.presence.start()
    await this.attestService?.start()
    await this.settlement?.start()
    await this.role.start()
    this.rendezvous?.start()
    this.redial.start()
    this.graylist.start()
    this.idle.start()
    this.expiryTimer = setInterval(() => {
      const connected = new Set(this.node.getConnections().map(c => c.remotePeer.toString()))
      this.directory.expire(id => connected.has(id))
    }, 10_000)
    this.expiryTimer.unref()
    this.metrics.knownPeersByRole = () => {
      const byName: Record<string, number> = {}
      for (const [role, count] of this.directory.countByRole()) byName[roleName(role)] = count
      return byName
    }
    this.node.addEventListener('connection:open', () => { this.schedulePeerLog() })
    this.node.addEventListener('connection:close', () => { this.schedulePeerLog() })
    this.metrics.up.set(1)

    if (this.config.admin.enabled) {
      const settlement = this.settlement
      this.admin = await startAdminServer(this.config.admin.host, this.config.admin.port, {
        healthy: () => !this.stopped && this.node.status === 'started',
        status: async () => this.status(),
        metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
        read: async path => settlement?.adminRead(path),
        act: async (path, body) => settlement?.adminAct(path, body),
        token: await loadOrCreateAdminToken(this.config.dataDir)
      })
      this.adminUrl = this.admin.url
    }
    await writeNodeFile(this.config.dataDir, {
      pid: process.pid,
      peerId: this.peerId.toString(),
      role: this.config.role,
      network: this.config.network,
      version: packageVersion(),
      addrs: this.addrs(),
      admin: this.adminUrl,
      startedAt: new Date(this.startedAtMs).toISOString()
    })
    this.console.info(`${this.config.role} ${this.peerId.toString()} started on the ${this.config.network} network`)
    for (const addr of this.addrs()) this.console.info(`listening on ${addr}`)
    if (this.adminUrl != null) this.console.info(`admin endpoint ${this.adminUrl} (/healthz /status /metrics)`)
    if (this.config.bootstrap.length === 0 && this.config.network === 'local' && this.config.role !== 'bootstrap') {
      this.console.warn('no bootstrap peers: start a bootstrap node first, or pass --bootstrap <multiaddr>')
    }
  }

  /**
   * Graceful shutdown: stop accepting new work, stop the role and services,
   * close every connection (aborting open streams), remove the node file.
   * Bounded by SHUTDOWN_TIMEOUT_MS; after that the node stops hard.
   */
  async stop (): Promise<void> {
    if (this.stopping != null) return this.stopping
    this.stopping = (async () => {
      this.console.info('stopping')
      clearInterval(this.expiryTimer)
      this.redial.stop()
      this.graylist.stop()
      this.idle.stop()
      clearTimeout(this.peerLogTimer)
      // each step runs even when an earlier one failed (e.g. the libp2p node already died)
      const step = async (name: string, fn: () => unknown): Promise<void> => {
        try {
          await fn()
        } catch (err) {
          this.log('stopping %s failed - %e', name, err)
        }
      }
      const graceful = (async () => {
        await step('role', async () => this.role.stop())
        await step('rendezvous', () => this.rendezvous?.stop())
        await step('presence', () => { this.presence.stop() })
        await step('attestation', async () => this.attestService?.stop())
        await step('info', async () => this.info.stop())
        await this.node.stop()
        await step('settlement', async () => this.settlement?.stop())
      })()
      let timer: ReturnType<typeof setTimeout> | undefined
      const timeout = new Promise<'timeout'>(resolve => { timer = setTimeout(() => { resolve('timeout') }, SHUTDOWN_TIMEOUT_MS) })
      const outcome = await Promise.race([graceful.then(() => 'done' as const), timeout])
      clearTimeout(timer)
      if (outcome === 'timeout') {
        this.console.warn(`graceful shutdown took over ${SHUTDOWN_TIMEOUT_MS} ms; closing connections hard`)
        for (const connection of this.node.getConnections()) connection.abort(new Error('shutdown'))
      }
      await this.admin?.close()
      await removeNodeFile(this.config.dataDir)
      this.metrics.up.set(0)
      this.console.info('stopped')
    })()
    return this.stopping
  }

  async status (): Promise<NodeStatus> {
    return await nodeStatus({
      config: this.config, node: this.node, directory: this.directory, startedAtMs: this.startedAtMs, addrs: this.addrs(),
      rendezvous: this.rendezvous, role: this.role, settlement: this.settlement
    })
  }

  private schedulePeerLog (): void {
    clearTimeout(this.peerLogTimer)
    this.peerLogTimer = setTimeout(() => {
      const count = new Set(this.node.getConnections().map(c => c.remotePeer.toString())).size
      if (count !== this.lastPeerCount && !this.stopped) {
        this.lastPeerCount = count
        this.console.info(`connected to ${count} peer${count === 1 ? '' : 's'}`)
      }
    }, 1_000)
    this.peerLogTimer.unref()
  }
}

function createRoleBehaviour (ctx: RoleContext, tee: NodeTee | undefined): RoleBehaviour {
  switch (ctx.config.role) {
    case 'proxy': return new ProxyRole(ctx, requireTee(tee))
    case 'worker': return new WorkerRole(ctx, requireTee(tee))
    case 'client': return new ClientRole(ctx, setupVerifier(ctx.config).verifier)
    // bootstrap: the relay server and DHT server mode are all it adds.
    default: return { start: async () => {}, stop: async () => {}, status: () => ({}) }
  }
}

function requireTee (tee: NodeTee | undefined): NodeTee {
  if (tee == null) throw new Error('this role needs attestation set up')
  return tee
}

/** Roles that pay or get paid. */
const SETTLING_ROLES: ReadonlyArray<NodeConfig['role']> = ['client', 'proxy', 'worker']

/** Roles that present attestation evidence to others. */
const ATTESTED_ROLES: ReadonlyArray<NodeConfig['role']> = ['worker', 'proxy']

export type { NodeStatus, PeerStatus } from './node-status.js'

/** Creates and starts a node from a validated configuration. */
export async function startNode (config: NodeConfig, options: StartNodeOptions = {}): Promise<RunningNode> {
  enableDebugLogs(config.logLevel)
  const startedAtMs = Date.now()
  const identity = await loadOrCreateIdentity(config.dataDir)
  const console = createConsoleLog(config.logLevel, config.role, options.consoleWrite)
  if (identity.created) console.info(`created a new identity in ${identity.path}`)
  const profile = ROLE_PROFILES[config.role]
  const preset = NETWORK_PRESETS[config.network]
  const addressFilter = config.dht.addressFilter === 'auto' ? preset.addressFilter : config.dht.addressFilter
  const registry = new Registry()
  const metrics = new NodeMetrics(registry)
  const logger: ComponentLogger = quietPrefixLogger(options.logPrefix ?? `${config.role}`)
  const log = logger.forComponent(`cocoon:${config.role}`)

  const bans = new PeerBans()
  const nodeInit = {
    privateKey: identity.privateKey,
    network: config.network,
    listen: await stickyListen(config.dataDir, config.listen),
    announce: config.announce,
    bootstrap: config.bootstrap,
    aminoBootstrap: options.aminoBootstrap ?? (config.useDefaultBootstrap ? undefined : []),
    dhtServer: profile.dhtServer,
    relayServer: profile.relayServer,
    addressFilter,
    metricsRegistry: options.metrics === false ? undefined : registry,
    logger,
    userAgent: `cocoon-p2p/${packageVersion()} ${config.role}`,
    maxConnections: config.maxConnections,
    // graylisted peers are kept out for a while (and partitions, in the simulator)
    denyPeer: (peer: string) => bans.has(peer) || (options.denyPeer?.(peer) ?? false)
  }
  const node = await createCocoonNode(nodeInit).catch(async (err: unknown) => {
    if (nodeInit.listen.every((a, i) => a === config.listen[i])) throw err
    // a port this node had before is taken now: take fresh ones
    console.warn(`the listen ports used before are not free (${(err as Error).message}); listening on new ones`)
    return await createCocoonNode({ ...nodeInit, listen: config.listen })
  })
  await rememberListenPorts(config.dataDir, config.listen, node.getMultiaddrs())
    .catch((err: unknown) => { console.warn(`cannot store the listen ports in ${config.dataDir}: ${(err as Error).message}`) })

  const directory = new PeerDirectory()
  const common = { role: profile.wireRole, network: config.network, version: packageVersion(), metrics }
  let role: RoleBehaviour | undefined
  const presence = new PresenceService(node, directory, {
    ...common,
    heartbeat: profile.presenceHeartbeat,
    listen: profile.presenceListen,
    workers: () => role?.workersKnown?.() ?? 0,
    log: logger.forComponent('cocoon:presence')
  })
  const info = new InfoService(node, directory, { ...common, startedAtMs, workers: () => role?.workersKnown?.(), log: logger.forComponent('cocoon:info') })
  let settlement: NodeSettlement | undefined
  let tee: NodeTee | undefined
  let attestService: AttestService | undefined
  let ctx: RoleContext
  try {
    settlement = config.settlement.enabled && SETTLING_ROLES.includes(config.role)
      ? await NodeSettlement.open(config, node, { devnet: options.devnet, metrics, log: logger.forComponent('cocoon:settlement'), console })
      : undefined
    ctx = { config, node, directory, info, metrics, log, logger, console, privateKey: identity.privateKey, settlement }
    tee = ATTESTED_ROLES.includes(config.role) ? await setupTee(config, identity.privateKey, console) : undefined
    role = createRoleBehaviour(ctx, tee)
  } catch (err) {
    await Promise.resolve(node.stop()).catch(() => {})
    await settlement?.stop().catch(() => {})
    throw err
  }
  if (tee != null) {
    attestService = new AttestService(node, {
      attestor: tee.attestor,
      capacity: () => role?.capacity?.(),
      onChallenged: peer => { role?.challengedBy?.(peer) },
      log: logger.forComponent('cocoon:attest'),
      metrics
    })
  }
  const rendezvous = preset.amino
    ? new RendezvousService(node, { ...options.rendezvous, network: config.network, provide: profile.provideRendezvous, log: logger.forComponent('cocoon:rendezvous') })
    : undefined
  const running = new RunningNode({
    config, node, directory, presence, info, metrics, role, rendezvous, console, log, startedAtMs, tee, attestService, settlement, bans
  })
  try {
    await running.start()
  } catch (err) {
    await running.stop().catch(() => {})
    throw err
  }
  return running
}

/**
 * True when every node has a directory record of every other node that
 * sends presence (bootstrap nodes and proxies): what a swarm needs before
 * workers can link to proxies and clients can pick one.
 */
export function knowThePublishers (nodes: RunningNode[]): boolean {
  const publishers = nodes.filter(m => ROLE_PROFILES[m.config.role].presenceHeartbeat)
  return nodes.every(n => publishers.every(m => m === n || n.directory.get(m.peerId.toString()) != null))
}

/**
 * The worker role: discovers its accelerators, announces the models it
 * serves with their prices and free slots (gossip and DHT), answers
 * attestation challenges with evidence bound to its keys, and keeps direct
 * links to a few proxies, where its announcements enter their gossip mesh.
 */
import { WORKER_PROXY_LINKS, WORKER_SWARM_SIZE_REFRESH_MAX_MS, WORKER_SWARM_SIZE_REFRESH_MIN_MS } from '../../p2p/constants.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { proxyKey } from '../../p2p/dht-keys.js'
import { PeerLinks } from '../../p2p/peer-links.js'
import { Role } from '../../gen/node.pb.js'
import { configuredAccelerators, discoverAccelerators } from './gpu.js'
import { CapacityAnnouncer } from './capacity-announcer.js'
import { ProxyConfirmations } from './proxy-confirmations.js'
import { servedModels } from './served-models.js'
import { createBackend } from './backends/index.js'
import { WorkService } from './work-service.js'
import type { InferenceBackend } from '../../inference/types.js'
import type { WorkServiceStatus } from './work-service.js'
import type { ServedModel } from './capacity-announcer.js'
import type { AnnouncerStatus } from './capacity-announcer.js'
import type { RoleBehaviour, RoleContext } from '../role.js'
import type { PeerRecord } from '../../p2p/peer-directory.js'
import type { NodeTee } from '../tee-setup.js'
import type { Accelerator, DiscoveryResult } from './gpu.js'

/** The worker's part of /status. */
export interface WorkerRoleStatus {
  announcing: AnnouncerStatus
  attestation: { kind: string, digest: string, imageHash: string }
  accelerators: Accelerator[]
  acceleratorSource: string | null
  proxies: string[]
  backend: { kind: string, available: boolean, detail: string, running: number, completed: number, failed: number, cancelled: number, tokens: number } | null
  jobs: WorkServiceStatus | null
}

/** nvidia-smi is re-read this often, so memory use and utilisation stay current. */
const ACCELERATOR_REFRESH_MS = 30_000

export class WorkerRole implements RoleBehaviour {
  private readonly ctx: RoleContext
  private readonly tee: NodeTee
  readonly announcer: CapacityAnnouncer
  private readonly links: PeerLinks
  private discovery?: DiscoveryResult
  /** The inference backend, once started. */
  backend?: InferenceBackend
  work?: WorkService
  private served: ServedModel[] = []
  private readonly onAvailability = (): void => { void this.followAvailability() }
  private refreshTimer?: ReturnType<typeof setInterval>
  private sizeTimer?: ReturnType<typeof setTimeout>
  private sizeRefreshMs = WORKER_SWARM_SIZE_REFRESH_MIN_MS
  /** The proxies known since start and which of them challenged this worker. */
  private readonly proxies: ProxyConfirmations
  private readonly onPeerUpdated = (evt: CustomEvent<PeerRecord>): void => { this.proxies.peerUpdated(evt.detail) }
  private readonly onSubscriptionChange = (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    const topics = this.announcer.topics()
    for (const s of evt.detail.subscriptions) if (s.subscribe && topics.includes(s.topic)) this.announcer.onProxySubscribed(s.topic)
  }

  constructor (ctx: RoleContext, tee: NodeTee) {
    this.ctx = ctx
    this.tee = tee
    const { config } = ctx
    this.proxies = new ProxyConfirmations(peerId => { this.announcer.confirmedBy(peerId) })
    this.announcer = new CapacityAnnouncer(ctx.node, {
      network: config.network,
      intervalMs: config.worker.announceIntervalMs,
      // the workers the proxies say they list (workers send no presence)
      knownWorkers: () => ctx.directory.workersEstimate(),
      knownProxies: () => this.proxies.known,
      gossip: config.worker.gossip,
      attestationKind: tee.kind,
      attestationDigest: new Uint8Array(tee.digest),
      log: ctx.log,
      console: ctx.console
    })
    this.links = new PeerLinks(ctx.node, ctx.directory, {
      role: Role.PROXY,
      target: WORKER_PROXY_LINKS,
      // proxies provide the `proxy` key: found there before any presence names them
      lookup: async function * (signal) { yield * ctx.node.contentRouting.findProviders(await proxyKey(), { signal }) },
      log: ctx.log
    })
  }

  async start (): Promise<void> {
    const { config } = this.ctx
    this.discovery = await discoverAccelerators({ override: acceleratorOverride(config.worker.accelerators) })
    this.announcer.setAccelerators(this.discovery.accelerators)
    this.ctx.console.info(`serving on ${describeAccelerators(this.discovery.accelerators)} (${this.discovery.source}${this.discovery.detail === '' ? '' : `: ${this.discovery.detail}`})`)
    const backend = await createBackend(config, line => { this.ctx.log('%s', line) })
    await backend.start(line => { this.ctx.console.info(line) })
    this.backend = backend
    this.served = await servedModels(config.worker.models, config.dataDir, backend.models())
    for (const m of backend.models()) if (m.synthetic) this.ctx.console.warn(`${m.name}: ${m.description}`)
    this.work = new WorkService(this.ctx.node, {
      backend,
      jobKey: { privateKey: this.tee.jobPrivateKey, publicKey: this.tee.jobPublicKey },
      signer: this.ctx.privateKey,
      peerId: this.ctx.node.peerId.toString(),
      models: config.worker.models.map(m => ({
        name: m.name, maxConcurrent: m.maxConcurrent, contextLength: m.contextLength,
        pricePromptPerM: BigInt(m.pricePromptPerM), priceCompletionPerM: BigInt(m.priceCompletionPerM)
      })),
      payments: this.ctx.settlement == null
        ? undefined
        : {
            manager: this.ctx.settlement.manager,
            required: config.settlement.required,
            paymentWaitMs: config.settlement.paymentWaitMs,
            settleWaitMs: config.settlement.settleWaitMs
          },
      onRunning: (model, jobs) => { this.announcer.setRunning(model, jobs) },
      metrics: this.ctx.metrics,
      log: this.ctx.logger.forComponent('cocoon:worker:jobs')
    })
    await this.work.start()
    backend.addEventListener?.('availability', this.onAvailability)
    await this.announcer.setModels(backend.status().available ? this.served : [])
    this.ctx.console.info(`${config.worker.backend} backend ready${backend.status().available ? '' : ` but unavailable: ${backend.status().detail}`}`)
    this.ctx.console.info(`offers ${config.worker.models.map(m => m.name).join(', ')}${config.worker.gossip ? '' : ' (DHT only, no gossip)'}`)
    this.ctx.node.services.pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    for (const record of this.ctx.directory.list()) this.proxies.peerUpdated(record)
    this.ctx.directory.addEventListener('peer:updated', this.onPeerUpdated)
    this.links.start()
    this.announcer.start()
    this.scheduleSizeRefresh()
    if (this.discovery.source === 'nvidia-smi') {
      this.refreshTimer = setInterval(() => { void this.refreshAccelerators() }, ACCELERATOR_REFRESH_MS)
      this.refreshTimer.unref()
    }
  }

  async stop (): Promise<void> {
    clearInterval(this.refreshTimer)
    clearTimeout(this.sizeTimer)
    this.sizeTimer = undefined
    this.ctx.directory.removeEventListener('peer:updated', this.onPeerUpdated)
    this.backend?.removeEventListener?.('availability', this.onAvailability)
    await this.work?.stop()
    this.ctx.node.services.pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    this.links.stop()
    await this.announcer.stop()
    await this.backend?.stop()
  }

  /** An upstream that goes down takes the worker off the market until it is back. */
  private async followAvailability (): Promise<void> {
    const status = this.backend?.status()
    if (status == null) return
    if (status.available) this.ctx.console.info('backend available again: announcing the models')
    else this.ctx.console.warn(`backend unavailable (${status.detail}): withdrawing the models until it is back`)
    await this.announcer.setModels(status.available ? this.served : []).catch(err => { this.ctx.log('re-announcing failed - %e', err) })
  }

  /** The current announcement, handed out with attestation evidence. */
  challengedBy (peerId: string): void {
    const role = this.ctx.directory.get(peerId)?.role
    this.proxies.challengedBy(peerId, role)
    if (role != null) return
    // its /cocoon/info may be on its way (asked at identify), or that request
    // may have failed under load: ask again, and the record's arrival counts
    // it (the one 1 000-node run without this second request did not form in
    // time: the last proxy missed a few workers for minutes)
    this.ctx.info.refresh(peerIdFromString(peerId)).catch(err => { this.ctx.log('info from challenger %s failed - %s', peerId, (err as Error).message) })
  }

  keepConnection (peerId: string): boolean {
    return this.links.keeps(peerId)
  }

  capacity (): Uint8Array {
    return this.announcer.current()
  }

  status (): WorkerRoleStatus & Record<string, unknown> {
    return {
      announcing: this.announcer.status(),
      attestation: { kind: this.tee.kind, digest: Buffer.from(this.tee.digest).toString('hex'), imageHash: this.tee.imageHash },
      accelerators: this.discovery?.accelerators ?? [],
      acceleratorSource: this.discovery?.source ?? null,
      proxies: this.links.linked(),
      backend: this.backend == null ? null : { kind: this.backend.kind, ...this.backend.status() },
      jobs: this.work?.status() ?? null
    }
  }

  /**
   * The proxies' worker counts size the capacity heartbeat; a worker takes no
   * presence, so it asks its linked proxies (their first count came with the
   * /cocoon/info asked when it connected), often while the count moves.
   */
  private scheduleSizeRefresh (): void {
    this.sizeTimer = setTimeout(() => {
      void this.refreshSwarmSize().finally(() => { if (this.sizeTimer != null) this.scheduleSizeRefresh() })
    }, Math.round(this.sizeRefreshMs * (0.9 + 0.2 * Math.random())))
    this.sizeTimer.unref()
  }

  private async refreshSwarmSize (): Promise<void> {
    const before = this.ctx.directory.workersEstimate()
    await Promise.all(this.links.linked().map(async peer => {
      await this.ctx.info.refresh(peerIdFromString(peer)).catch(err => { this.ctx.log('info from proxy %s failed - %s', peer, (err as Error).message) })
    }))
    this.sizeRefreshMs = nextSizeRefreshMs(this.sizeRefreshMs, before, this.ctx.directory.workersEstimate())
  }

  private async refreshAccelerators (): Promise<void> {
    const next = await discoverAccelerators()
    if (next.source === 'nvidia-smi') this.announcer.setAccelerators(next.accelerators)
  }
}

/**
 * The wait before a worker asks its proxies for the swarm's size again: the
 * shortest while the estimate moved by more than a tenth, doubling while it
 * holds.
 */
export function nextSizeRefreshMs (previousMs: number, before: number, after: number): number {
  if (Math.abs(after - before) > Math.max(1, before) / 10) return WORKER_SWARM_SIZE_REFRESH_MIN_MS
  return Math.min(WORKER_SWARM_SIZE_REFRESH_MAX_MS, previousMs * 2)
}

function acceleratorOverride (value: RoleContext['config']['worker']['accelerators']): Accelerator[] | 'cpu' | undefined {
  if (value === 'auto' || value === 'cpu') return value === 'cpu' ? 'cpu' : undefined
  return configuredAccelerators(value)
}

function describeAccelerators (list: Accelerator[]): string {
  const counts = new Map<string, number>()
  for (const a of list) counts.set(a.name, (counts.get(a.name) ?? 0) + 1)
  return [...counts].map(([name, n]) => n > 1 ? `${n}x ${name}` : name).join(', ')
}

/**
 * The proxy role: listed under the `proxy` key in the Cocoon DHT so clients
 * find it, and keeper of the worker registry. It validates every capacity
 * announcement on the capacity shards of the models it routes (attesting each
 * worker once per attestation digest), marks a worker down when its
 * connection drops and it cannot be dialled back, expires the silent ones,
 * and falls back to the DHT for models no fresh worker announced. It keeps
 * no standing connections to workers: workers link to a few proxies, and the
 * proxy connects to others on demand (a challenge, a job).
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { CAPACITY_SHARD_TOPICS } from '../../p2p/constants.js'
import { capacityTopicsFor } from '../../p2p/capacity-shards.js'
import { proxyKey } from '../../p2p/dht-keys.js'
import { ProvidedKeys } from '../../p2p/provided-keys.js'
import { IgnoredRate } from '../../p2p/peer-penalties.js'
import { CapacityValidator } from './capacity-validator.js'
import { PeerAttestations } from '../../tee/peer-attestations.js'
import { WorkerLookup } from './worker-lookup.js'
import { DownCheck } from './down-check.js'
import { WorkerEvidence } from './worker-evidence.js'
import { ProxyJobService } from './job-service.js'
import type { ProxyPayments } from './job-service.js'
import { WorkerRegistry } from './worker-registry.js'
import type { RoleBehaviour, RoleContext } from '../role.js'
import type { NodeTee } from '../tee-setup.js'
import type { LookupResult } from './worker-lookup.js'
import type { ProxyJobStatus } from './job-service.js'
import type { ModelSummary, WorkerEntry } from './worker-registry.js'
import type { Connection } from '@libp2p/interface'

/** The proxy's part of /status (JSON: bigints as strings). */
export interface ProxyRoleStatus {
  dht: Array<{ name: string, provided: boolean }>
  jobs: ProxyJobStatus
  models: Array<Omit<ModelSummary, 'minPromptPerM' | 'maxPromptPerM' | 'minCompletionPerM' | 'maxCompletionPerM'> & {
    minPromptPerM: string
    maxPromptPerM: string
    minCompletionPerM: string
    maxCompletionPerM: string
  }>
  workers: Array<{
    peerId: string
    state: 'up' | 'down'
    source: 'gossip' | 'dht'
    models: Array<{ name: string, pricePromptPerM: string, priceCompletionPerM: string, freeSlots: number, maxConcurrent: number, contextLength: number }>
    accelerators: string[]
    attestation: { kind: string, tcbStatus: string, imageHash: string }
    ageMs: number
    latencyMs: number | null
    successRate: number
  }>
}

/** How often expired registry entries and attestation cache entries are swept. */
const SWEEP_INTERVAL_MS = 1_000
/** Workers a proxy opens payment channels to as soon as it hears of them; others get one on their first job. */
const PROXY_PREOPEN_CHANNELS = 8

/** The worker count a proxy states: those it lists, plus pending first challenges up to as many again (see `workersKnown`). */
export function statedWorkers (listed: number, pending: number): number {
  return listed + Math.min(pending, listed)
}

export class ProxyRole implements RoleBehaviour {
  private readonly ctx: RoleContext
  readonly registry: WorkerRegistry
  readonly attestations: PeerAttestations
  readonly validator: CapacityValidator
  readonly lookup: WorkerLookup
  readonly evidence: WorkerEvidence
  readonly jobs: ProxyJobService
  private readonly provided: ProvidedKeys
  /** The capacity shard topics this proxy hears. */
  readonly topics: string[]
  private sweepTimer?: ReturnType<typeof setInterval>
  private readonly downCheck: DownCheck
  private readonly ignored = new IgnoredRate()
  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    // a connection this proxy opened (a challenge, a job) closes when it is idle, by either side;
    // the last one a worker opened (its link) is checked: see DownCheck
    if (conn.direction !== 'inbound' || this.ctx.node.getConnections(conn.remotePeer).length > 0) return
    void this.downCheck.check(conn.remotePeer)
  }
  private readonly onWorkerUpdated = (evt: CustomEvent<WorkerEntry>): void => {
    const w = evt.detail
    if (w.state === 'up' && !this.announced.has(w.peerId)) {
      this.announced.add(w.peerId)
      this.evidence.prefetch(peerIdFromString(w.peerId))
      this.ctx.console.info(`worker ${w.peerId} joined: ${w.offers.map(o => o.model).join(', ')} (${w.attestation.kind} attestation, via ${w.source})`)
      // A channel opens on chain in seconds on TON: have it before the worker's
      // first job, not during it, for the first few workers. Beyond those, each
      // opens on first use: a channel locks a deposit, and a proxy that hears
      // of thousands of workers must not fund a channel to every one.
      if (this.ctx.settlement != null && this.preopened.size < PROXY_PREOPEN_CHANNELS) {
        this.preopened.add(w.peerId)
        this.ctx.settlement.payerFor(w.peerId).catch(err => { this.ctx.log('no channel to worker %s yet - %s', w.peerId, (err as Error).message) })
      }
    }
  }
  private readonly onWorkerRemoved = (evt: CustomEvent<{ peerId: string, why: string }>): void => {
    this.evidence.forget(evt.detail.peerId)
    this.validator.forget(evt.detail.peerId)
    if (this.announced.delete(evt.detail.peerId)) this.ctx.console.info(`worker ${evt.detail.peerId} left (${evt.detail.why})`)
  }
  private readonly announced = new Set<string>()
  private readonly preopened = new Set<string>()

  constructor (ctx: RoleContext, tee: NodeTee) {
    this.ctx = ctx
    this.registry = new WorkerRegistry()
    this.downCheck = new DownCheck({
      dial: async (peer, options) => ctx.node.dial(peer, options),
      listedUp: id => this.registry.get(id)?.state === 'up',
      markDown: id => { this.registry.markDown(id) },
      log: ctx.log
    })
    this.evidence = new WorkerEvidence(ctx.node, ctx.logger.forComponent('cocoon:proxy:evidence'))
    this.attestations = new PeerAttestations(ctx.node, {
      verifier: tee.verifier,
      metrics: ctx.metrics,
      log: ctx.logger.forComponent('cocoon:attestations'),
      onEpochEvidence: (peerId, evidence) => { this.evidence.offer(peerId, evidence) }
    })
    this.validator = new CapacityValidator(this.registry, this.attestations, {
      network: ctx.config.network,
      acceptKinds: tee.policy.acceptKinds,
      metrics: ctx.metrics,
      learnAddrs: async (peer, multiaddrs) => { await ctx.node.peerStore.merge(peer, { multiaddrs }) }
    })
    this.lookup = new WorkerLookup(ctx.node, this.registry, this.attestations, this.validator, ctx.logger.forComponent('cocoon:worker-lookup'))
    this.jobs = new ProxyJobService(ctx.node, {
      registry: this.registry,
      lookup: this.lookup,
      evidence: this.evidence,
      maxJobs: ctx.config.proxy.maxJobs,
      maxJobsPerClient: ctx.config.proxy.maxJobsPerClient,
      queue: { depth: ctx.config.proxy.queueDepth, maxWaitMs: ctx.config.proxy.queueWaitMs },
      payments: settlementFor(ctx),
      metrics: ctx.metrics,
      log: ctx.logger.forComponent('cocoon:proxy:jobs')
    })
    // a worker that announces a free slot lets the next job waiting for one go
    this.registry.addEventListener('worker:updated', () => { this.jobs.capacityChanged() })
    this.provided = new ProvidedKeys(ctx.node, ctx.log, ctx.console)
    this.topics = ctx.config.proxy.models.length === 0 ? [...CAPACITY_SHARD_TOPICS] : capacityTopicsFor(ctx.config.proxy.models)
  }

  async start (): Promise<void> {
    const pubsub = this.ctx.node.services.pubsub
    for (const topic of this.topics) {
      pubsub.topicValidators.set(topic, this.ignored.guard(async (from, message) => {
        // straight from the worker: the connection it came on is the worker's link here
        if (message.type === 'signed' && from.equals(message.from)) this.downCheck.heardDirect(from.toString())
        return await this.validator.validateGossip(message)
      }))
      pubsub.subscribe(topic)
    }
    this.ctx.node.addEventListener('connection:close', this.onConnectionClose)
    this.registry.addEventListener('worker:updated', this.onWorkerUpdated)
    this.registry.addEventListener('worker:removed', this.onWorkerRemoved)
    this.sweepTimer = setInterval(() => {
      this.registry.expire()
      this.attestations.prune()
    }, SWEEP_INTERVAL_MS)
    this.sweepTimer.unref()
    this.ctx.metrics.registryByState = () => {
      const counts: Record<string, number> = { up: 0, down: 0 }
      for (const w of this.registry.list()) counts[w.state]++
      return counts
    }
    await this.jobs.start()
    this.provided.add('proxy', await proxyKey())
  }

  async stop (): Promise<void> {
    clearInterval(this.sweepTimer)
    await this.jobs.stop()
    this.ctx.node.removeEventListener('connection:close', this.onConnectionClose)
    this.registry.removeEventListener('worker:updated', this.onWorkerUpdated)
    this.registry.removeEventListener('worker:removed', this.onWorkerRemoved)
    const pubsub = this.ctx.node.services.pubsub
    for (const topic of this.topics) {
      pubsub.topicValidators.delete(topic)
      pubsub.unsubscribe(topic)
    }
    await this.provided.stop()
  }


  /** Fresh workers for a model, asking the DHT when the registry has none. */
  async findWorkers (model: string): Promise<LookupResult> {
    return this.lookup.find(model)
  }

  /**
   * The workers listed plus those whose first challenge is still under way,
   * the latter counted at most up to the listed ones. Workers size their
   * heartbeat by this count (stated in presence); while a large swarm forms
   * the proxies have checked only part of it, and a count of the listed alone
   * kept every worker on the small-swarm heartbeat, a storm of announcements
   * that slowed the very checks it waited for. The cap matters as much: a
   * peer that announces from many unreachable identities fills the challenge
   * queue, and an uncapped count stretched honest workers' heartbeats (and so
   * how soon proxies hear of a full or freed slot) tenfold in the adversaries
   * simulation.
   */
  workersKnown (): number {
    return statedWorkers(this.registry.size, this.attestations.pending)
  }

  status (): ProxyRoleStatus & Record<string, unknown> {
    const nowMs = Date.now()
    return {
      dht: this.provided.status(),
      jobs: this.jobs.status(),
      models: this.registry.models().map(m => ({
        ...m,
        minPromptPerM: m.minPromptPerM.toString(),
        maxPromptPerM: m.maxPromptPerM.toString(),
        minCompletionPerM: m.minCompletionPerM.toString(),
        maxCompletionPerM: m.maxCompletionPerM.toString()
      })),
      workers: this.registry.list().map(w => ({
        peerId: w.peerId,
        state: w.state,
        source: w.source,
        models: w.offers.map(o => ({
          name: o.model,
          pricePromptPerM: o.pricePromptPerM.toString(),
          priceCompletionPerM: o.priceCompletionPerM.toString(),
          freeSlots: o.freeSlots,
          maxConcurrent: o.maxConcurrent,
          contextLength: o.contextLength
        })),
        accelerators: w.accelerators.map(a => a.name),
        attestation: { kind: w.attestation.kind, tcbStatus: w.attestation.tcbStatus, imageHash: w.attestation.imageHash },
        ageMs: nowMs - w.lastSeenMs,
        latencyMs: w.latencyMs ?? null,
        successRate: w.successRate
      }))
    }
  }
}

/** The proxy's payment settings: clients pay it through their channels, it pays workers through its own. */
function settlementFor (ctx: RoleContext): ProxyPayments | undefined {
  const settlement = ctx.settlement
  if (settlement == null) return undefined
  const s = ctx.config.settlement
  return {
    manager: settlement.manager,
    required: s.required,
    commissionBp: s.commissionBp,
    payerFor: async (worker, signal) => settlement.payerFor(worker, signal),
    payableWorkers: () => settlement.payablePeers(),
    paymentWaitMs: s.paymentWaitMs,
    settleWaitMs: s.settleWaitMs
  }
}

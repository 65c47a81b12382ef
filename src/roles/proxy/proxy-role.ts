/**
 * The proxy role: listed under the `proxy` key in the Cocoon DHT so clients
 * find it, and keeper of the worker registry. It validates every capacity
 * announcement on `cocoon/1/capacity` (attesting each worker once per
 * attestation digest), marks workers down the moment their last connection
 * closes, expires the silent ones, and falls back to the DHT for models no
 * fresh worker announced.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { CAPACITY_TOPIC, PROXY_MAX_WORKER_LINKS } from '../../p2p/constants.js'
import { PeerLinks } from '../../p2p/peer-links.js'
import { Role } from '../../p2p/protos/node.js'
import { proxyKey } from '../../p2p/dht-keys.js'
import { ProvidedKeys } from '../../p2p/provided-keys.js'
import { CapacityValidator } from './capacity-validator.js'
import { PeerAttestations } from './peer-attestations.js'
import { WorkerLookup } from './worker-lookup.js'
import { WorkerEvidence } from './worker-evidence.js'
import { ProxyJobService } from './job-service.js'
import type { ProxyPayments } from './job-service.js'
import { WorkerRegistry } from './worker-registry.js'
import type { RoleBehaviour, RoleContext } from '../role.js'
import type { NodeTee } from '../tee-setup.js'
import type { LookupResult } from './worker-lookup.js'
import type { ProxyJobStatus } from './job-service.js'
import type { ModelSummary, WorkerEntry } from './worker-registry.js'
import type { PeerId } from '@libp2p/interface'

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

export class ProxyRole implements RoleBehaviour {
  private readonly ctx: RoleContext
  readonly registry: WorkerRegistry
  readonly attestations: PeerAttestations
  readonly validator: CapacityValidator
  readonly lookup: WorkerLookup
  readonly evidence: WorkerEvidence
  readonly jobs: ProxyJobService
  private readonly provided: ProvidedKeys
  private readonly links: PeerLinks
  private sweepTimer?: ReturnType<typeof setInterval>
  private readonly onDisconnect = (evt: CustomEvent<PeerId>): void => { this.registry.markDown(evt.detail.toString()) }
  private readonly onWorkerUpdated = (evt: CustomEvent<WorkerEntry>): void => {
    const w = evt.detail
    if (w.state === 'up' && !this.announced.has(w.peerId)) {
      this.announced.add(w.peerId)
      this.evidence.prefetch(peerIdFromString(w.peerId))
      this.ctx.console.info(`worker ${w.peerId} joined: ${w.offers.map(o => o.model).join(', ')} (${w.attestation.kind} attestation, via ${w.source})`)
      // a channel opens on chain in seconds on TON: have it before the worker's first job, not during it
      this.ctx.settlement?.payerFor(w.peerId).catch(err => { this.ctx.log('no channel to worker %s yet - %s', w.peerId, (err as Error).message) })
    }
  }
  private readonly onWorkerRemoved = (evt: CustomEvent<{ peerId: string, why: string }>): void => {
    this.evidence.forget(evt.detail.peerId)
    if (this.announced.delete(evt.detail.peerId)) this.ctx.console.info(`worker ${evt.detail.peerId} left (${evt.detail.why})`)
  }
  private readonly announced = new Set<string>()

  constructor (ctx: RoleContext, tee: NodeTee) {
    this.ctx = ctx
    this.registry = new WorkerRegistry()
    this.attestations = new PeerAttestations(ctx.node, {
      verifier: tee.verifier,
      metrics: ctx.metrics,
      log: ctx.logger.forComponent('cocoon:attestations')
    })
    this.validator = new CapacityValidator(this.registry, this.attestations, {
      network: ctx.config.network,
      acceptKinds: tee.policy.acceptKinds,
      metrics: ctx.metrics
    })
    this.lookup = new WorkerLookup(ctx.node, this.registry, this.attestations, this.validator, ctx.logger.forComponent('cocoon:worker-lookup'))
    this.evidence = new WorkerEvidence(ctx.node, ctx.logger.forComponent('cocoon:proxy:evidence'))
    this.jobs = new ProxyJobService(ctx.node, {
      registry: this.registry,
      lookup: this.lookup,
      evidence: this.evidence,
      maxJobs: ctx.config.proxy.maxJobs,
      maxJobsPerClient: ctx.config.proxy.maxJobsPerClient,
      payments: settlementFor(ctx),
      metrics: ctx.metrics,
      log: ctx.logger.forComponent('cocoon:proxy:jobs')
    })
    this.provided = new ProvidedKeys(ctx.node, ctx.log, ctx.console)
    this.links = new PeerLinks(ctx.node, ctx.directory, { role: Role.WORKER, max: PROXY_MAX_WORKER_LINKS, log: ctx.log })
  }

  async start (): Promise<void> {
    const pubsub = this.ctx.node.services.pubsub
    pubsub.topicValidators.set(CAPACITY_TOPIC, async (_from, message) => this.validator.validateGossip(message))
    pubsub.subscribe(CAPACITY_TOPIC)
    this.ctx.node.addEventListener('peer:disconnect', this.onDisconnect)
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
    this.links.start()
    await this.jobs.start()
    this.provided.add('proxy', await proxyKey())
  }

  async stop (): Promise<void> {
    clearInterval(this.sweepTimer)
    await this.jobs.stop()
    this.links.stop()
    this.ctx.node.removeEventListener('peer:disconnect', this.onDisconnect)
    this.registry.removeEventListener('worker:updated', this.onWorkerUpdated)
    this.registry.removeEventListener('worker:removed', this.onWorkerRemoved)
    const pubsub = this.ctx.node.services.pubsub
    pubsub.topicValidators.delete(CAPACITY_TOPIC)
    pubsub.unsubscribe(CAPACITY_TOPIC)
    await this.provided.stop()
  }

  /** Fresh workers for a model, asking the DHT when the registry has none. */
  async findWorkers (model: string): Promise<LookupResult> {
    return this.lookup.find(model)
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
    paymentWaitMs: s.paymentWaitMs,
    settleWaitMs: s.settleWaitMs
  }
}

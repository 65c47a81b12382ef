/**
 * A worker's capacity announcements: what it serves (models, prices, free
 * slots), on what hardware, under which attestation, and where to dial it.
 * Published on the capacity shard topics of its models at start, on changes
 * and at a heartbeat interval that grows with the swarm (so proxies receive
 * a bounded number per second however many workers there are). Changes
 * that empty or refill a model go out at once (coalesced); other load
 * changes at most once per fifth of the heartbeat. Each model is also
 * provided as `model:<name>` in the DHT, and the record is cancelled when the
 * model is unloaded. On stop the worker announces an empty model list, so
 * proxies drop it at once instead of waiting out the TTL.
 */
import {
  CAPACITY_COALESCE_MS, CAPACITY_LOAD_GAP_FRACTION, CAPACITY_MAX_ADDRS, CAPACITY_MAX_BYTES, CAPACITY_PER_WORKER_MS, P2P_MULTIADDR_CODE
} from '../../p2p/constants.js'
import { capacityTopicsFor } from '../../p2p/capacity-shards.js'
import { MAX_INTERVAL_MS } from '../capacity/announcement.js'
import { modelKey } from '../../p2p/dht-keys.js'
import { ProvidedKeys } from '../../p2p/provided-keys.js'
import { AcceleratorKind, CapacityAnnouncement } from '../../gen/capacity.pb.js'
import { ConfigError } from '../../errors.js'
import { kindToWire } from '../../tee/attest-service.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { ProvidedKeyStatus } from '../../p2p/provided-keys.js'
import type { ConsoleLog } from '../../ops/console-log.js'
import type { Accelerator as WireAccelerator, ModelOffer } from '../../gen/capacity.pb.js'
import type { Accelerator } from './gpu.js'
import type { EvidenceKind } from '../../tee/types.js'
import type { Logger } from '@libp2p/interface'

/** A model as the worker serves it: the announced offer, less the free slots computed at each announcement. */
export type ServedModel = Omit<ModelOffer, 'freeSlots'>

export interface AnnouncerStatus {
  gossip: boolean
  published: number
  seq: string | null
  lastAnnouncedAt: string | null
  models: Array<{ name: string, contextLength: number, pricePromptPerM: string, priceCompletionPerM: string, maxConcurrent: number, freeSlots: number }>
  dht: ProvidedKeyStatus[]
  /** Proxies that have challenged this worker, and how many it knows of. */
  confirmedBy: number
  proxiesKnown: number
}

/**
 * Proxies that should have challenged a worker before it heartbeats at its
 * full interval: every proxy it knows, up to this many. A proxy that is still
 * challenging a worker ignores its announcement and so does not forward it;
 * a proxy that heard it from nobody else would otherwise wait a whole
 * heartbeat (minutes in a large swarm) to list the worker.
 */
const CONFIRMING_PROXIES = 8
/** The first early re-announcement while fewer have; it doubles each time. */
const CONFIRM_RETRY_MS = 5_000

export interface CapacityAnnouncerInit {
  network: string
  /** The heartbeat in a small swarm; it grows by CAPACITY_PER_WORKER_MS per known worker. */
  intervalMs: number
  /** How many workers this node knows of (presence), to size the heartbeat. */
  knownWorkers?: () => number
  /** How many proxies this node knows of: until some have challenged it, it announces sooner. */
  knownProxies?: () => number
  /** false: only DHT records and /cocoon/attest, no gossip. */
  gossip: boolean
  attestationKind: EvidenceKind
  attestationDigest: Uint8Array<ArrayBuffer>
  now?: () => number
  log: Logger
  console: ConsoleLog
}

export class CapacityAnnouncer {
  private readonly node: CocoonLibp2p
  private readonly init: CapacityAnnouncerInit
  private readonly now: () => number
  private readonly provided: ProvidedKeys
  private models: ServedModel[] = []
  private readonly running = new Map<string, number>()
  private accelerators: Accelerator[] = []
  private lastSeq = 0n
  private lastAnnouncement?: CapacityAnnouncement
  private published = 0
  private timer?: ReturnType<typeof setTimeout>
  private pending?: ReturnType<typeof setTimeout>
  private stopped = true
  /** Shard topics of the models last announced: a withdrawal goes where they went. */
  private lastTopics: string[] = []
  private lastPublishedMs = 0
  private pendingAtMs = 0
  /** Peers each shard topic's last announcement was sent to. */
  private readonly lastRecipients = new Map<string, number>()
  /** Proxies that challenged this worker. */
  private readonly confirmed = new Set<string>()
  private unconfirmedRounds = 0

  constructor (node: CocoonLibp2p, init: CapacityAnnouncerInit) {
    this.node = node
    this.init = init
    this.now = init.now ?? Date.now
    this.provided = new ProvidedKeys(node, init.log, init.console)
  }

  start (): void {
    this.stopped = false
    this.scheduleHeartbeat()
    this.announceSoon()
  }

  /** A proxy challenged this worker (it heard an announcement and is listing it). */
  confirmedBy (peerId: string): void {
    this.confirmed.add(peerId)
    this.unconfirmedRounds = 0
  }

  /**
   * The wait before the next heartbeat. In a large swarm the heartbeat is
   * minutes long, and a first announcement that a proxy could not check (it
   * was busy challenging hundreds of newcomers, or the worker's answer timed
   * out) would leave the worker unlisted there until the next one. So until
   * min(CONFIRMING_PROXIES, known proxies) proxies, and at least one, have
   * challenged it, a worker announces again after CONFIRM_RETRY_MS, doubling
   * each time, never longer than the heartbeat. At least one: a worker takes
   * no presence, and one that knows no proxy yet (its connections to them
   * failed while the swarm was busy) must not fall silent for a heartbeat.
   */
  nextHeartbeatMs (): number {
    const interval = this.intervalMs()
    const want = Math.min(CONFIRMING_PROXIES, Math.max(1, this.init.knownProxies?.() ?? 0))
    if (this.confirmed.size >= want) return interval
    return Math.min(interval, CONFIRM_RETRY_MS * 2 ** this.unconfirmedRounds++)
  }

  /** The heartbeat now: the configured interval, longer in a large swarm, never past what proxies accept. */
  intervalMs (): number {
    const scaled = (this.init.knownWorkers?.() ?? 0) * CAPACITY_PER_WORKER_MS
    return Math.min(MAX_INTERVAL_MS, Math.max(this.init.intervalMs, scaled))
  }

  // re-armed after each heartbeat with the interval of the moment, jittered
  // by up to 10% so workers started together spread out
  private scheduleHeartbeat (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => {
      void this.announce().finally(() => { this.scheduleHeartbeat() })
    }, Math.round(this.nextHeartbeatMs() * (0.9 + 0.1 * Math.random())))
    this.timer.unref?.()
  }

  /** Withdraws from proxies (empty announcement) and from the DHT. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearTimeout(this.timer)
    clearTimeout(this.pending)
    await this.publish(this.build([]))
    await this.provided.stop()
  }

  /** Replaces the served models: DHT records follow, and proxies hear at once. */
  async setModels (models: ServedModel[]): Promise<void> {
    const candidate = this.build(models)
    const size = CapacityAnnouncement.encode(candidate).length
    if (size > CAPACITY_MAX_BYTES) {
      throw new ConfigError('worker.models', `the capacity announcement would be ${size} bytes, over the ${CAPACITY_MAX_BYTES}-byte limit; serve fewer models or use shorter names`)
    }
    const names = new Set(models.map(m => m.name))
    for (const old of this.models) {
      if (!names.has(old.name)) {
        await this.provided.remove(`model:${old.name}`)
        this.running.delete(old.name)
      }
    }
    for (const m of models) this.provided.add(`model:${m.name}`, await modelKey(m.name))
    this.models = models
    this.announceSoon()
  }

  setAccelerators (accelerators: Accelerator[]): void {
    this.accelerators = accelerators
  }

  /**
   * Jobs running for a model changed. A model that became full or has a free
   * slot again goes out at once (coalesced); other load changes wait for a
   * fifth of the heartbeat since the last announcement, so a busy worker does
   * not announce per job.
   */
  setRunning (model: string, jobs: number): void {
    const before = this.running.get(model) ?? 0
    if (before === jobs) return
    this.running.set(model, jobs)
    const served = this.models.find(m => m.name === model)
    const crossed = served != null && (before >= served.maxConcurrent) !== (jobs >= served.maxConcurrent)
    if (crossed) {
      this.announceSoon()
    } else {
      const gapMs = Math.round(this.intervalMs() * CAPACITY_LOAD_GAP_FRACTION)
      this.announceIn(Math.max(CAPACITY_COALESCE_MS, this.lastPublishedMs + gapMs - this.now()))
    }
  }

  /** The latest announcement, encoded: what /cocoon/attest hands out. */
  current (): Uint8Array {
    return CapacityAnnouncement.encode(this.lastAnnouncement ?? this.build(this.models))
  }

  status (): AnnouncerStatus {
    const a = this.lastAnnouncement
    return {
      gossip: this.init.gossip,
      published: this.published,
      seq: a?.seq.toString() ?? null,
      lastAnnouncedAt: a == null ? null : new Date(Number(a.timestampMs)).toISOString(),
      models: this.models.map(m => ({
        name: m.name,
        contextLength: m.contextLength,
        pricePromptPerM: m.pricePromptPerM.toString(),
        priceCompletionPerM: m.priceCompletionPerM.toString(),
        maxConcurrent: m.maxConcurrent,
        freeSlots: this.freeSlots(m)
      })),
      dht: this.provided.status(),
      confirmedBy: this.confirmed.size,
      proxiesKnown: this.init.knownProxies?.() ?? 0
    }
  }

  /** Builds and publishes an announcement now. Returns how many peers it went to. */
  async announce (): Promise<number> {
    if (this.stopped) return 0
    return this.publish(this.build(this.models))
  }

  private freeSlots (m: ServedModel): number {
    return Math.max(0, m.maxConcurrent - (this.running.get(m.name) ?? 0))
  }

  private build (models: ServedModel[]): CapacityAnnouncement {
    // Unix-time based, so it keeps increasing across restarts without storage.
    const seq = BigInt(this.now()) * 1000n
    this.lastSeq = seq > this.lastSeq ? seq : this.lastSeq + 1n
    return {
      peerId: this.node.peerId.toMultihash().bytes,
      network: this.init.network,
      models: models.map(m => ({
        name: m.name,
        weightsHash: m.weightsHash,
        contextLength: m.contextLength,
        pricePromptPerM: m.pricePromptPerM,
        priceCompletionPerM: m.priceCompletionPerM,
        maxConcurrent: m.maxConcurrent,
        freeSlots: this.freeSlots(m),
        synthetic: m.synthetic,
        description: m.description
      })),
      accelerators: this.accelerators.slice(0, 16).map(toWire),
      attestationKind: kindToWire(this.init.attestationKind),
      attestationDigest: this.init.attestationDigest,
      timestampMs: BigInt(this.now()),
      seq: this.lastSeq,
      intervalMs: this.intervalMs(),
      addrs: this.node.getMultiaddrs().slice(0, CAPACITY_MAX_ADDRS).map(ma => ma.decapsulateCode(P2P_MULTIADDR_CODE).bytes)
    }
  }

  /** The shard topics this worker announces on: its models' (or, withdrawing, the last ones'). */
  topics (): string[] {
    return capacityTopicsFor(this.models.map(m => m.name))
  }

  private async publish (a: CapacityAnnouncement): Promise<number> {
    this.lastAnnouncement = a
    this.lastPublishedMs = this.now()
    if (!this.init.gossip) return 0
    const topics = a.models.length > 0 ? capacityTopicsFor(a.models.map(m => m.name)) : this.lastTopics
    this.lastTopics = topics
    const data = CapacityAnnouncement.encode(a)
    const recipients = new Set<string>()
    for (const topic of topics) {
      try {
        const result = await this.node.services.pubsub.publish(topic, data)
        this.lastRecipients.set(topic, result.recipients.length)
        for (const peer of result.recipients) recipients.add(peer.toString())
      } catch (err) {
        this.lastRecipients.set(topic, 0)
        // no proxy subscribed yet: the next interval or a newcomer's subscription retries
        this.init.log('capacity publish on %s failed - %s', topic, (err as Error).message)
      }
    }
    this.published++
    return recipients.size
  }

  private announceSoon (): void {
    this.announceIn(CAPACITY_COALESCE_MS)
  }

  /** One announcement `delayMs` from now, unless one is already due sooner. */
  private announceIn (delayMs: number): void {
    if (this.stopped) return
    const at = this.now() + delayMs
    if (this.pending != null && this.pendingAtMs <= at) return
    clearTimeout(this.pending)
    this.pendingAtMs = at
    this.pending = setTimeout(() => {
      this.pending = undefined
      void this.announce()
    }, delayMs)
    this.pending.unref?.()
  }

  /**
   * A connected proxy subscribed to `topic`, one of our shard topics. If our
   * last announcement there reached no proxy (we were still connecting), it
   * hears from us soon, not at the next heartbeat (at most once per load
   * gap, however many proxies subscribe). One that reached any proxy has
   * reached them all through their mesh: repeating it for each proxy we
   * connect to (links, DHT queries, challenges) only multiplied a joining
   * worker's announcements by the number of proxies.
   */
  onProxySubscribed (topic?: string): void {
    if (topic != null && (this.lastRecipients.get(topic) ?? 0) > 0) return
    const gapMs = Math.round(this.intervalMs() * CAPACITY_LOAD_GAP_FRACTION)
    this.announceIn(Math.max(CAPACITY_COALESCE_MS, this.lastPublishedMs + gapMs - this.now()))
  }
}

function toWire (a: Accelerator): WireAccelerator {
  return {
    kind: a.kind === 'cpu' ? AcceleratorKind.CPU : AcceleratorKind.GPU,
    name: a.name.slice(0, 128),
    memoryTotalMib: Math.max(0, Math.round(a.memoryTotalMiB)),
    memoryUsedMib: Math.min(Math.max(0, Math.round(a.memoryUsedMiB)), Math.max(0, Math.round(a.memoryTotalMiB))),
    utilizationPct: Math.min(100, Math.max(0, Math.round(a.utilizationPct))),
    driver: a.driver.slice(0, 128),
    computeCapability: a.computeCapability.slice(0, 128)
  }
}

/**
 * A worker's capacity announcements: what it serves (models, prices, free
 * slots), on what hardware, under which attestation. Published on
 * `cocoon/1/capacity` at start, on every change (coalesced) and every
 * interval; each model is also provided as `model:<name>` in the DHT, and the
 * record is cancelled when the model is unloaded. On stop the worker
 * announces an empty model list, so proxies drop it at once instead of
 * waiting out the TTL.
 */
import { CAPACITY_COALESCE_MS, CAPACITY_MAX_BYTES, CAPACITY_TOPIC } from '../../p2p/constants.js'
import { modelKey } from '../../p2p/dht-keys.js'
import { ProvidedKeys } from '../../p2p/provided-keys.js'
import { AcceleratorKind, CapacityAnnouncement } from '../../p2p/protos/capacity.js'
import { ConfigError } from '../../errors.js'
import { kindToWire } from '../../tee/attest-service.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { ProvidedKeyStatus } from '../../p2p/provided-keys.js'
import type { ConsoleLog } from '../../ops/console-log.js'
import type { Accelerator as WireAccelerator, ModelOffer } from '../../p2p/protos/capacity.js'
import type { Accelerator } from '../../tee/gpu.js'
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
}

export interface CapacityAnnouncerInit {
  network: string
  intervalMs: number
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
  private timer?: ReturnType<typeof setInterval>
  private pending?: ReturnType<typeof setTimeout>
  private stopped = true

  constructor (node: CocoonLibp2p, init: CapacityAnnouncerInit) {
    this.node = node
    this.init = init
    this.now = init.now ?? Date.now
    this.provided = new ProvidedKeys(node, init.log, init.console)
  }

  start (): void {
    this.stopped = false
    this.timer = setInterval(() => { void this.announce() }, this.init.intervalMs)
    this.timer.unref?.()
    this.announceSoon()
  }

  /** Withdraws from proxies (empty announcement) and from the DHT. */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    clearInterval(this.timer)
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

  /** Jobs running for a model changed: free slots go out with the next (coalesced) announcement. */
  setRunning (model: string, jobs: number): void {
    if (this.running.get(model) === jobs) return
    this.running.set(model, jobs)
    this.announceSoon()
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
      dht: this.provided.status()
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
      intervalMs: this.init.intervalMs
    }
  }

  private async publish (a: CapacityAnnouncement): Promise<number> {
    this.lastAnnouncement = a
    if (!this.init.gossip) return 0
    try {
      const result = await this.node.services.pubsub.publish(CAPACITY_TOPIC, CapacityAnnouncement.encode(a))
      this.published++
      return result.recipients.length
    } catch (err) {
      // no proxy subscribed yet: the next interval or a newcomer's subscription retries
      this.init.log('capacity publish failed - %s', (err as Error).message)
      return 0
    }
  }

  private announceSoon (): void {
    if (this.stopped || this.pending != null) return
    this.pending = setTimeout(() => {
      this.pending = undefined
      void this.announce()
    }, CAPACITY_COALESCE_MS)
    this.pending.unref?.()
  }

  /** A proxy subscribed to the capacity topic: it hears from us now, not at the next interval. */
  onProxySubscribed (): void {
    this.announceSoon()
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

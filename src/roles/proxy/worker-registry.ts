/**
 * The proxy's live table of workers: what each offers (models, prices, free
 * slots), what attested it, and how it has behaved (latency and success rate,
 * both decayed so old history fades). Pure bookkeeping, no I/O: the capacity
 * validator and the DHT lookup feed it, job routing reads it.
 *
 * Entries expire when announcements stop; a worker whose last connection
 * closes is marked down at once and comes back up with its next announcement.
 */
import { toString as toHex } from 'uint8arrays/to-string'
import { TypedEventEmitter } from 'main-event'
import {
  CAPACITY_INTERVAL_MS, CAPACITY_MAX_BASE_INTERVAL_MS, CAPACITY_MIN_TTL_MS, CAPACITY_MAX_CLOCK_SKEW_MS, CAPACITY_PER_WORKER_MS, CAPACITY_TTL_INTERVALS
} from '../../p2p/constants.js'
import { MAX_INTERVAL_MS } from '../capacity/announcement.js'
import { AcceleratorKind } from '../../gen/capacity.pb.js'
import type { CapacityAnnouncement } from '../../gen/capacity.pb.js'
import type { EvidenceKind, VerifiedAttestation } from '../../tee/types.js'

export interface WorkerOffer {
  model: string
  /** sha256 of the weights, hex; '' when the worker did not say. */
  weightsHash: string
  contextLength: number
  pricePromptPerM: bigint
  priceCompletionPerM: bigint
  maxConcurrent: number
  freeSlots: number
  synthetic: boolean
  description: string
}

/** One model across every worker that offers it. */
export interface ModelSummary {
  model: string
  workers: number
  freeSlots: number
  /** The longest context any of its workers offers. */
  contextLength: number
  minPromptPerM: bigint
  maxPromptPerM: bigint
  minCompletionPerM: bigint
  maxCompletionPerM: bigint
  /** True when any worker says it is a synthetic test model. */
  synthetic: boolean
  /** The first worker's description. */
  description: string
}

export interface WorkerAccelerator {
  kind: 'gpu' | 'cpu'
  name: string
  memoryTotalMiB: number
  memoryUsedMiB: number
  utilizationPct: number
}

export interface WorkerAttestation {
  kind: EvidenceKind
  digest: string
  imageHash: string
  tcbStatus: string
  jobPublicKey: Uint8Array
  verifiedAtMs: number
}

export interface WorkerEntry {
  peerId: string
  offers: WorkerOffer[]
  accelerators: WorkerAccelerator[]
  attestation: WorkerAttestation
  seq: bigint
  /** The worker's own timestamp on its latest announcement. */
  announcedAtMs: number
  /** Local time the latest announcement arrived. */
  lastSeenMs: number
  /** Without a new announcement, the entry expires this long after lastSeenMs. */
  ttlMs: number
  state: 'up' | 'down'
  /** How the latest announcement reached us. */
  source: 'gossip' | 'dht'
  /** Decayed mean job latency, ms; undefined until a job has run. */
  latencyMs?: number
  /** Decayed share of jobs that succeeded, 0–1 (1 with no history). */
  successRate: number
  jobs: { ok: number, failed: number }
}

export interface WorkerRegistryEvents {
  'worker:updated': CustomEvent<WorkerEntry>
  'worker:removed': CustomEvent<{ peerId: string, why: 'expired' | 'withdrawn' }>
}

export interface WorkerRegistryInit {
  /** Announcement intervals missed before an entry expires. */
  ttlIntervals?: number
  /** Half-life of latency and success history. */
  historyHalfLifeMs?: number
  now?: () => number
}

const DEFAULT_HISTORY_HALF_LIFE_MS = 10 * 60_000
/** Weight of the first observed latency against later ones. */
const LATENCY_ALPHA = 0.3

interface History {
  successWeight: number
  totalWeight: number
  updatedAtMs: number
  /** Failures in a row; each doubles the time the worker sits out. */
  failStreak: number
  /** Until then the worker gets jobs only when no other worker can take them. */
  demotedUntilMs: number
}

/** A worker's first failure in a row keeps it out of routing this long; each further one doubles it, up to the max. */
export const DEMOTION_BASE_MS = 5_000
export const DEMOTION_MAX_MS = 10 * 60_000

export class WorkerRegistry extends TypedEventEmitter<WorkerRegistryEvents> {
  private readonly ttlIntervals: number
  private readonly halfLifeMs: number
  private readonly now: () => number
  private readonly entries = new Map<string, WorkerEntry>()
  private readonly history = new Map<string, History>()
  /** Highest sequence number per worker, kept past expiry so replays stay refused. */
  private readonly seqs = new Map<string, { seq: bigint, atMs: number }>()

  constructor (init: WorkerRegistryInit = {}) {
    super()
    this.ttlIntervals = init.ttlIntervals ?? CAPACITY_TTL_INTERVALS
    this.halfLifeMs = init.historyHalfLifeMs ?? DEFAULT_HISTORY_HALF_LIFE_MS
    this.now = init.now ?? Date.now
  }

  get size (): number {
    return this.entries.size
  }

  /** The longest heartbeat this swarm's size justifies (twice the per-worker stretch, for estimates that lag). */
  intervalCap (): number {
    return Math.min(MAX_INTERVAL_MS, Math.max(CAPACITY_MAX_BASE_INTERVAL_MS, 2 * CAPACITY_PER_WORKER_MS * this.entries.size))
  }

  get (peerId: string): WorkerEntry | undefined {
    return this.entries.get(peerId)
  }

  list (): WorkerEntry[] {
    return [...this.entries.values()]
  }

  /** The highest sequence number accepted from a worker, or -1n when none. */
  lastSeq (peerId: string): bigint {
    return this.seqs.get(peerId)?.seq ?? -1n
  }

  /** Records an announcement that passed validation. An empty model list withdraws the worker. */
  update (peerId: string, a: CapacityAnnouncement, attestation: VerifiedAttestation, source: WorkerEntry['source']): WorkerEntry | undefined {
    const nowMs = this.now()
    this.seqs.set(peerId, { seq: a.seq, atMs: nowMs })
    if (a.models.length === 0) {
      this.remove(peerId, 'withdrawn')
      return undefined
    }
    const previous = this.entries.get(peerId)
    const entry: WorkerEntry = {
      peerId,
      offers: a.models.map(m => ({
        model: m.name,
        weightsHash: toHex(m.weightsHash, 'base16'),
        contextLength: m.contextLength,
        pricePromptPerM: m.pricePromptPerM,
        priceCompletionPerM: m.priceCompletionPerM,
        maxConcurrent: m.maxConcurrent,
        freeSlots: m.freeSlots,
        synthetic: m.synthetic,
        description: m.description
      })),
      accelerators: a.accelerators.map(acc => ({
        kind: acc.kind === AcceleratorKind.CPU ? 'cpu' : 'gpu',
        name: acc.name,
        memoryTotalMiB: acc.memoryTotalMib,
        memoryUsedMiB: acc.memoryUsedMib,
        utilizationPct: acc.utilizationPct
      })),
      attestation: {
        kind: attestation.kind,
        digest: toHex(attestation.digest, 'base16'),
        imageHash: attestation.imageHash,
        tcbStatus: attestation.tcbStatus,
        jobPublicKey: attestation.jobPublicKey,
        verifiedAtMs: attestation.verifiedAtMs
      },
      seq: a.seq,
      announcedAtMs: Number(a.timestampMs),
      lastSeenMs: nowMs,
      ttlMs: Math.max(CAPACITY_MIN_TTL_MS, this.ttlIntervals * Math.min(a.intervalMs > 0 ? a.intervalMs : CAPACITY_INTERVAL_MS, this.intervalCap())),
      state: 'up',
      source,
      latencyMs: previous?.latencyMs,
      successRate: rateOf(this.decayed(peerId, nowMs)),
      jobs: previous?.jobs ?? { ok: 0, failed: 0 }
    }
    this.entries.set(peerId, entry)
    this.safeDispatchEvent('worker:updated', { detail: entry })
    return entry
  }

  /** The worker's last connection closed: route nothing to it until it announces again. */
  markDown (peerId: string): void {
    const entry = this.entries.get(peerId)
    if (entry == null || entry.state === 'down') return
    entry.state = 'down'
    this.safeDispatchEvent('worker:updated', { detail: entry })
  }

  remove (peerId: string, why: 'expired' | 'withdrawn'): void {
    if (this.entries.delete(peerId)) this.safeDispatchEvent('worker:removed', { detail: { peerId, why } })
  }

  /** Drops entries not refreshed within the TTL, and replay guards older than any acceptable timestamp. */
  expire (): void {
    const nowMs = this.now()
    for (const entry of [...this.entries.values()]) {
      if (nowMs - entry.lastSeenMs > entry.ttlMs) this.remove(entry.peerId, 'expired')
    }
    for (const [peerId, { atMs }] of this.seqs) {
      if (!this.entries.has(peerId) && nowMs - atMs > 2 * CAPACITY_MAX_CLOCK_SKEW_MS) this.seqs.delete(peerId)
    }
  }

  /**
   * Workers that can take a job for `model` now: up, fresh, with a free slot,
   * cheapest completion price first, then best success rate.
   */
  workersFor (model: string): Array<{ entry: WorkerEntry, offer: WorkerOffer }> {
    return this.offersFor(model).filter(w => w.offer.freeSlots > 0).sort((a, b) =>
      a.offer.priceCompletionPerM === b.offer.priceCompletionPerM
        ? b.entry.successRate - a.entry.successRate
        : (a.offer.priceCompletionPerM < b.offer.priceCompletionPerM ? -1 : 1))
  }

  /**
   * Every fresh, up worker offering `model`, free slots or not (routing tells
   * "busy" from "absent"). Workers sitting out a demotion are left out unless
   * no other worker offers the model.
   */
  offersFor (model: string): Array<{ entry: WorkerEntry, offer: WorkerOffer }> {
    const nowMs = this.now()
    const out: Array<{ entry: WorkerEntry, offer: WorkerOffer }> = []
    const demoted: Array<{ entry: WorkerEntry, offer: WorkerOffer }> = []
    for (const entry of this.entries.values()) {
      if (entry.state !== 'up' || nowMs - entry.lastSeenMs > entry.ttlMs) continue
      const offer = entry.offers.find(o => o.model === model)
      if (offer == null) continue
      if ((this.history.get(entry.peerId)?.demotedUntilMs ?? 0) > nowMs) demoted.push({ entry, offer })
      else out.push({ entry, offer })
    }
    return out.length > 0 ? out : demoted
  }

  /** Until when a worker sits out after failures in a row (0: it does not). */
  demotedUntil (peerId: string): number {
    return this.history.get(peerId)?.demotedUntilMs ?? 0
  }

  /** Models on offer now: how many workers serve each, their free slots, context and price ranges. */
  models (): ModelSummary[] {
    const byModel = new Map<string, ModelSummary>()
    for (const entry of this.entries.values()) {
      if (entry.state !== 'up') continue
      for (const o of entry.offers) {
        const m = byModel.get(o.model)
        if (m == null) {
          byModel.set(o.model, {
            model: o.model,
            workers: 1,
            freeSlots: o.freeSlots,
            contextLength: o.contextLength,
            minPromptPerM: o.pricePromptPerM,
            maxPromptPerM: o.pricePromptPerM,
            minCompletionPerM: o.priceCompletionPerM,
            maxCompletionPerM: o.priceCompletionPerM,
            synthetic: o.synthetic,
            description: o.description
          })
          continue
        }
        m.workers++
        m.freeSlots += o.freeSlots
        m.contextLength = Math.max(m.contextLength, o.contextLength)
        if (o.pricePromptPerM < m.minPromptPerM) m.minPromptPerM = o.pricePromptPerM
        if (o.pricePromptPerM > m.maxPromptPerM) m.maxPromptPerM = o.pricePromptPerM
        if (o.priceCompletionPerM < m.minCompletionPerM) m.minCompletionPerM = o.priceCompletionPerM
        if (o.priceCompletionPerM > m.maxCompletionPerM) m.maxCompletionPerM = o.priceCompletionPerM
        m.synthetic ||= o.synthetic
      }
    }
    return [...byModel.values()].sort((a, b) => a.model.localeCompare(b.model))
  }

  /** Records how a job on a worker went; feeds latency and success rate. */
  recordResult (peerId: string, result: { ok: boolean, latencyMs?: number }): void {
    const nowMs = this.now()
    const h = this.decayed(peerId, nowMs)
    h.totalWeight += 1
    if (result.ok) h.successWeight += 1
    // a worker that stalls or fails sits out for a growing time; one success clears it
    h.failStreak = result.ok ? 0 : h.failStreak + 1
    h.demotedUntilMs = result.ok ? 0 : nowMs + Math.min(DEMOTION_MAX_MS, DEMOTION_BASE_MS * 2 ** Math.min(h.failStreak - 1, 20))
    const entry = this.entries.get(peerId)
    if (entry == null) return
    if (result.ok) entry.jobs.ok++
    else entry.jobs.failed++
    entry.successRate = rateOf(h)
    if (result.latencyMs != null) {
      entry.latencyMs = entry.latencyMs == null ? result.latencyMs : entry.latencyMs + LATENCY_ALPHA * (result.latencyMs - entry.latencyMs)
    }
    this.safeDispatchEvent('worker:updated', { detail: entry })
  }

  /** The worker's history with every weight decayed to `nowMs`. */
  private decayed (peerId: string, nowMs: number): History {
    let h = this.history.get(peerId)
    if (h == null) {
      h = { successWeight: 0, totalWeight: 0, updatedAtMs: nowMs, failStreak: 0, demotedUntilMs: 0 }
      this.history.set(peerId, h)
    }
    const factor = Math.pow(0.5, Math.max(0, nowMs - h.updatedAtMs) / this.halfLifeMs)
    h.successWeight *= factor
    h.totalWeight *= factor
    h.updatedAtMs = nowMs
    return h
  }
}

/** Success share with one imaginary success as a prior, so a new worker starts at 1 and one failure does not zero it. */
function rateOf (h: History): number {
  return (h.successWeight + 1) / (h.totalWeight + 1)
}

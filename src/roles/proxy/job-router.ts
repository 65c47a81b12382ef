/**
 * The proxy's routing decision, without I/O: among the fresh, attested
 * workers offering a model under the client's price cap, rank those with a
 * free slot by expected wait (busy slots × recent job latency), success rate
 * and price, with a little jitter so equal workers share the load. A worker
 * the proxy cannot pay yet (no channel open) ranks lower: its first job would
 * wait for a channel to open on chain.
 */
import type { WorkerEntry, WorkerOffer } from './worker-registry.js'

export interface PriceCap {
  promptPerM: bigint
  completionPerM: bigint
}

export interface RankedWorker {
  entry: WorkerEntry
  offer: WorkerOffer
  /** Slots busy as far as we know: the announcement's, or our own jobs if more. */
  busy: number
  expectedWaitMs: number
  score: number
}

export type RouteDecision =
  | { ok: true, workers: RankedWorker[] }
  | { ok: false, code: 'model_unknown' | 'price_too_low' | 'no_capacity', message: string }

/** Assumed job latency of a worker that has run nothing for us yet. */
const DEFAULT_LATENCY_MS = 1_000
/** Relative jitter on scores: spreads load among near-equal workers. */
const JITTER = 0.15
/** Score factor of a worker whose payment channel is not open yet. */
export const UNPAYABLE_FACTOR = 0.25

export function rankWorkers (
  model: string,
  offers: Array<{ entry: WorkerEntry, offer: WorkerOffer }>,
  cap: PriceCap,
  inFlight: (peerId: string) => number,
  random: () => number = Math.random,
  payable: (peerId: string) => boolean = () => true
): RouteDecision {
  if (offers.length === 0) return { ok: false, code: 'model_unknown', message: `no worker serves ${model}` }
  const affordable = offers.filter(({ offer }) => offer.pricePromptPerM <= cap.promptPerM && offer.priceCompletionPerM <= cap.completionPerM)
  if (affordable.length === 0) {
    const cheapest = offers.reduce((a, b) => b.offer.priceCompletionPerM < a.offer.priceCompletionPerM ? b : a).offer
    return {
      ok: false,
      code: 'price_too_low',
      message: `every worker for ${model} asks more than the price cap (${cap.promptPerM}/${cap.completionPerM} nanoTON per 1M tokens in/out); the cheapest asks ${cheapest.pricePromptPerM}/${cheapest.priceCompletionPerM}`
    }
  }
  const cheapest = affordable.reduce((min, { offer }) => offer.priceCompletionPerM < min ? offer.priceCompletionPerM : min, affordable[0].offer.priceCompletionPerM)
  const ranked: RankedWorker[] = []
  for (const { entry, offer } of affordable) {
    const busy = Math.max(offer.maxConcurrent - offer.freeSlots, inFlight(entry.peerId))
    if (busy >= offer.maxConcurrent) continue
    const expectedWaitMs = busy * (entry.latencyMs ?? DEFAULT_LATENCY_MS) / offer.maxConcurrent
    const priceFactor = offer.priceCompletionPerM === 0n ? 1 : Math.sqrt(Number(cheapest === 0n ? 1n : cheapest) / Number(offer.priceCompletionPerM))
    const score = entry.successRate * entry.successRate * priceFactor / (1 + expectedWaitMs / 1_000) * (1 + JITTER * random()) * (payable(entry.peerId) ? 1 : UNPAYABLE_FACTOR)
    ranked.push({ entry, offer, busy, expectedWaitMs, score })
  }
  if (ranked.length === 0) return { ok: false, code: 'no_capacity', message: `every worker for ${model} is busy; retry shortly` }
  return { ok: true, workers: ranked.sort((a, b) => b.score - a.score) }
}

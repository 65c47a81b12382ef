/**
 * The proxy's offer to a client: the first ranked workers whose epoch
 * evidence it has (or can get now), each with its job key and the prices
 * the client pays and the worker gets.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { DEFAULT_CACHED_BP, DEFAULT_REASONING_BP } from '../../settlement/pricing.js'
import type { RankedWorker } from './job-router.js'
import type { WorkerEvidence } from './worker-evidence.js'
import type { WorkerCandidate } from '../../gen/job.pb.js'
import type { ModelPrice } from '../../settlement/pricing.js'
import type { Logger } from '@libp2p/interface'

export interface OfferInit {
  evidence: Pick<WorkerEvidence, 'get'>
  /** What clients pay for a worker's price (the proxy's commission added). */
  clientPrice: (worker: ModelPrice) => ModelPrice
  log: Logger
}

/** The first `wanted` ranked workers whose epoch evidence we have or can get now. */
export async function offerCandidates (ranked: RankedWorker[], wanted: number, init: OfferInit): Promise<Array<{ ranked: RankedWorker, wire: WorkerCandidate }>> {
  const out: Array<{ ranked: RankedWorker, wire: WorkerCandidate }> = []
  for (let i = 0; i < ranked.length && out.length < wanted;) {
    const batch = ranked.slice(i, i + wanted - out.length)
    i += batch.length
    const results = await Promise.allSettled(batch.map(async r => init.evidence.get(peerIdFromString(r.entry.peerId), r.entry.attestation.jobPublicKey)))
    for (const [j, result] of results.entries()) {
      const r = batch[j]
      if (result.status === 'rejected') {
        init.log('no epoch evidence from %s - %s', r.entry.peerId, (result.reason as Error).message)
        continue
      }
      const client = init.clientPrice(workerPrice(r))
      out.push({
        ranked: r,
        wire: {
          peerId: r.entry.peerId,
          evidence: result.value,
          jobPublicKey: new Uint8Array(r.entry.attestation.jobPublicKey),
          pricePromptPerM: client.promptPerM,
          priceCompletionPerM: client.completionPerM,
          workerPricePromptPerM: r.offer.pricePromptPerM,
          workerPriceCompletionPerM: r.offer.priceCompletionPerM
        }
      })
    }
  }
  return out
}

/** A ranked worker's price as the settlement counts it. */
export function workerPrice (r: RankedWorker): ModelPrice {
  return { promptPerM: r.offer.pricePromptPerM, completionPerM: r.offer.priceCompletionPerM, cachedBp: DEFAULT_CACHED_BP, reasoningBp: DEFAULT_REASONING_BP }
}

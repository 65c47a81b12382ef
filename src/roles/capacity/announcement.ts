/**
 * Capacity announcements: what a worker offers (models, prices, free slots,
 * accelerators, attestation digest). Workers build them; proxies check them
 * here, field by field, whether they arrived by gossip or straight from the
 * worker over /cocoon/attest.
 *
 * Every check returns a reason string (a metrics label). Reject reasons are
 * things an honest worker never signs; Ignore reasons are things an honest
 * worker can cause by being late or on another network.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { CAPACITY_MAX_ADDRS, CAPACITY_MAX_BYTES, CAPACITY_MAX_CLOCK_SKEW_MS, MODEL_NAME_PATTERN } from '../../p2p/constants.js'
import { TopicValidatorResult } from '../../p2p/gossip.js'
import { NETWORK_PRESETS } from '../../p2p/networks.js'
import type { NetworkId } from '../../p2p/networks.js'
import { CapacityAnnouncement } from '../../gen/capacity.pb.js'
import {
  MAX_CONCURRENT_JOBS, MAX_CONTEXT_LENGTH, MAX_MODELS_PER_WORKER, MAX_PRICE_NANOTON_PER_M
} from '../../config/schema.js'
import type { ModelOffer } from '../../gen/capacity.pb.js'

export const MAX_ACCELERATORS = 16
/** The announcement intervals a worker may use (the config allows the same range). */
export const MIN_INTERVAL_MS = 1_000
export const MAX_INTERVAL_MS = 600_000
const MAX_TEXT = 128
const DIGEST_BYTES = 32
const WEIGHTS_HASH_BYTES = 32

export type Verdict =
  | { result: TopicValidatorResult.Accept }
  | { result: TopicValidatorResult.Ignore | TopicValidatorResult.Reject, reason: string }

export const ACCEPT: Verdict = { result: TopicValidatorResult.Accept }
export const reject = (reason: string): Verdict => ({ result: TopicValidatorResult.Reject, reason })
export const ignore = (reason: string): Verdict => ({ result: TopicValidatorResult.Ignore, reason })

/** Decodes an announcement; undefined when it is too large or not one. */
export function decodeAnnouncement (bytes: Uint8Array): { announcement?: CapacityAnnouncement, verdict: Verdict } {
  if (bytes.length > CAPACITY_MAX_BYTES) return { verdict: reject('too_large') }
  try {
    return { announcement: CapacityAnnouncement.decode(bytes, { limits: { addrs: CAPACITY_MAX_ADDRS } }), verdict: ACCEPT }
  } catch {
    return { verdict: reject('malformed') }
  }
}

/**
 * The checks that need no state: network, clock, and that every number and
 * string is in range. `nowMs` is the receiver's clock.
 */
export function checkFields (a: CapacityAnnouncement, network: string, nowMs: number): Verdict {
  if (a.network !== network) return ignore('other_network')
  const ageMs = nowMs - Number(a.timestampMs)
  if (ageMs > CAPACITY_MAX_CLOCK_SKEW_MS) return ignore('stale')
  if (ageMs < -CAPACITY_MAX_CLOCK_SKEW_MS) return ignore('future')
  if (a.attestationDigest.length !== DIGEST_BYTES) return reject('bad_digest')
  if (a.intervalMs < MIN_INTERVAL_MS || a.intervalMs > MAX_INTERVAL_MS) return reject('bad_interval')
  if (a.models.length > MAX_MODELS_PER_WORKER) return reject('too_many_models')
  if (a.accelerators.length > MAX_ACCELERATORS) return reject('too_many_accelerators')
  if (a.addrs.length > CAPACITY_MAX_ADDRS) return reject('too_many_addrs')
  for (const bytes of a.addrs) {
    try {
      multiaddr(bytes)
    } catch {
      return reject('bad_addr')
    }
  }
  const floor = NETWORK_PRESETS[a.network as NetworkId]?.minPriceCompletionPerM ?? 0n
  const names = new Set<string>()
  for (const m of a.models) {
    const problem = checkOffer(m, floor)
    if (problem != null) return reject(problem)
    if (names.has(m.name)) return reject('duplicate_model')
    names.add(m.name)
  }
  for (const acc of a.accelerators) {
    if (acc.name.length > MAX_TEXT || acc.driver.length > MAX_TEXT || acc.computeCapability.length > MAX_TEXT) return reject('bad_accelerator')
    if (acc.utilizationPct > 100 || acc.memoryUsedMib > acc.memoryTotalMib) return reject('bad_accelerator')
  }
  return ACCEPT
}

/** Characters of a model's description. */
export const MAX_DESCRIPTION = 160

function checkOffer (m: ModelOffer, minPriceCompletionPerM: bigint): string | undefined {
  if (!MODEL_NAME_PATTERN.test(m.name)) return 'bad_model_name'
  if (m.weightsHash.length !== 0 && m.weightsHash.length !== WEIGHTS_HASH_BYTES) return 'bad_weights_hash'
  if (m.contextLength < 1 || m.contextLength > MAX_CONTEXT_LENGTH) return 'bad_context_length'
  const maxPrice = BigInt(MAX_PRICE_NANOTON_PER_M)
  if (m.pricePromptPerM > maxPrice || m.priceCompletionPerM > maxPrice) return 'bad_price'
  if (m.priceCompletionPerM < minPriceCompletionPerM) return 'price_below_floor'
  if (m.maxConcurrent < 1 || m.maxConcurrent > MAX_CONCURRENT_JOBS || m.freeSlots > m.maxConcurrent) return 'bad_slots'
  if (m.description.length > MAX_DESCRIPTION) return 'bad_description'
  return undefined
}

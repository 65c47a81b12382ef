/**
 * What tokens cost. Prices are nanoTON per 1M tokens; cached prompt tokens
 * and reasoning tokens are charged at a multiplier (basis points) of the
 * prompt and completion price. A job's cost is rounded up to a whole
 * nanoTON once, over the whole usage, so both ends of a channel compute the
 * same amount from the same counts, and the cost of a stream never falls as
 * tokens arrive.
 *
 * The proxy quotes clients the worker's price plus its commission (basis
 * points on top); its margin on a job is client cost - worker cost.
 */
import type { Usage } from '../inference/types.js'

export const BASIS_POINTS = 10_000n
const TOKENS_PER_PRICE_UNIT = 1_000_000n

export interface ModelPrice {
  promptPerM: bigint
  completionPerM: bigint
  /** cached prompt tokens cost this share of the prompt price, in basis points (10000 = full price) */
  cachedBp: number
  /** reasoning tokens cost this share of the completion price, in basis points */
  reasoningBp: number
}

export const DEFAULT_CACHED_BP = 5_000
export const DEFAULT_REASONING_BP = 10_000

/** Cost of `usage` at `price`, nanoTON, rounded up. */
export function costOf (usage: Usage, price: ModelPrice): bigint {
  const prompt = BigInt(usage.promptTokens)
  const cached = BigInt(Math.min(usage.cachedTokens, usage.promptTokens))
  const completion = BigInt(usage.completionTokens)
  const reasoning = BigInt(Math.min(usage.reasoningTokens, usage.completionTokens))
  const scaled =
    (prompt - cached) * price.promptPerM * BASIS_POINTS +
    cached * price.promptPerM * BigInt(price.cachedBp) +
    (completion - reasoning) * price.completionPerM * BASIS_POINTS +
    reasoning * price.completionPerM * BigInt(price.reasoningBp)
  const unit = TOKENS_PER_PRICE_UNIT * BASIS_POINTS
  return (scaled + unit - 1n) / unit
}

/** A worker's price per 1M tokens with `commissionBp` on top, rounded up: what clients pay. */
export function addCommission (workerPerM: bigint, commissionBp: number): bigint {
  return (workerPerM * (BASIS_POINTS + BigInt(commissionBp)) + BASIS_POINTS - 1n) / BASIS_POINTS
}

/** The highest worker price whose client price stays within `clientCapPerM` (the inverse of addCommission). */
export function removeCommission (clientCapPerM: bigint, commissionBp: number): bigint {
  return clientCapPerM * BASIS_POINTS / (BASIS_POINTS + BigInt(commissionBp))
}

/** The price a proxy quotes clients for a worker's price. */
export function withCommission (worker: ModelPrice, commissionBp: number): ModelPrice {
  return { ...worker, promptPerM: addCommission(worker.promptPerM, commissionBp), completionPerM: addCommission(worker.completionPerM, commissionBp) }
}

/** What one job cost and who got what, nanoTON; shown in each response's usage. */
export interface JobCost {
  /** what the client pays the proxy */
  client: bigint
  /** what the proxy pays the worker */
  worker: bigint
  /** what the proxy keeps: client - worker */
  commission: bigint
}

export function jobCost (usage: Usage, clientPrice: ModelPrice, workerPrice: ModelPrice): JobCost {
  const client = costOf(usage, clientPrice)
  const worker = costOf(usage, workerPrice)
  return { client, worker, commission: client - worker }
}

/**
 * Verifies real Intel TDX quotes with Intel DCAP, through the pure-JS
 * `@phala/dcap-qvl`: the PCK certificate chain up to Intel's root, the QE
 * report, the quote signature and the platform's TCB level against Intel's
 * signed collateral (TCB info, QE identity, CRLs).
 *
 * Collateral comes from a PCCS (or Intel's PCS) and only changes when Intel
 * publishes new TCB info, so it is cached per (FMSPC, CA) until its
 * `nextUpdate`; it is fetched only when a real quote must be verified.
 * Verification results are cached per quote until the collateral's
 * `nextUpdate` or a maximum age, whichever comes first: a gossiping network
 * sees the same epoch-bound quote many times.
 */
import { getCollateral, intel, Quote, verify } from '@phala/dcap-qvl'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { DEFAULT_PCCS_URL } from '../p2p/constants.js'
import { AttestationError } from '../errors.js'
import { parseTdxQuote } from './quote.js'
import type { AttestationFailure } from '../errors.js'
import type { Measurements, QuoteVerification, QuoteVerifier } from './types.js'
import type { Collateral } from '@phala/dcap-qvl'

export type { Collateral }

/** Where collateral for a quote comes from. */
export type CollateralSource = (quote: Uint8Array) => Promise<Collateral>

export const DEFAULT_MAX_RESULT_AGE_MS = 60 * 60 * 1000
export const DEFAULT_MAX_CACHED_RESULTS = 4096

/** Fetches collateral from a PCCS (or Intel's PCS) at `pccsUrl`. */
export function pccsCollateral (pccsUrl: string): CollateralSource {
  return async (quote) => {
    try {
      return await getCollateral(pccsUrl, quote)
    } catch (err) {
      throw new AttestationError('collateral', `cannot fetch collateral from ${pccsUrl}: ${(err as Error).message}`, { cause: err })
    }
  }
}

export interface DcapVerifierOptions {
  /** PCCS to fetch collateral from when no `collateral` source is given. */
  pccsUrl?: string
  collateral?: CollateralSource
  /** Longest a verification result is reused, even with collateral still valid. */
  maxResultAgeMs?: number
  maxCachedResults?: number
}

export interface DcapStats {
  resultHits: number
  resultMisses: number
  collateralHits: number
  collateralFetches: number
}

interface CachedResult {
  verification: QuoteVerification
  /** Valid for callers' times in [verifiedAtMs, expiresAtMs). */
  verifiedAtMs: number
  expiresAtMs: number
}

interface CachedCollateral {
  collateral: Collateral
  expiresAtMs: number
}

export class DcapVerifier implements QuoteVerifier {
  readonly kind = 'tdx' as const
  private readonly source: CollateralSource
  private readonly maxResultAgeMs: number
  private readonly maxCachedResults: number
  private readonly results = new Map<string, CachedResult>()
  private readonly collaterals = new Map<string, CachedCollateral>()
  private readonly fetching = new Map<string, Promise<CachedCollateral>>()
  private readonly counters: DcapStats = { resultHits: 0, resultMisses: 0, collateralHits: 0, collateralFetches: 0 }

  constructor (options: DcapVerifierOptions = {}) {
    this.source = options.collateral ?? pccsCollateral(options.pccsUrl ?? DEFAULT_PCCS_URL)
    this.maxResultAgeMs = options.maxResultAgeMs ?? DEFAULT_MAX_RESULT_AGE_MS
    this.maxCachedResults = options.maxCachedResults ?? DEFAULT_MAX_CACHED_RESULTS
  }

  async verify (quote: Uint8Array, nowMs: number): Promise<QuoteVerification> {
    // a hit means these exact bytes parsed and verified before: no need to parse them again
    const key = bytesToHex(sha256(quote))
    const hit = this.results.get(key)
    if (hit != null && hit.verifiedAtMs <= nowMs && nowMs < hit.expiresAtMs) {
      this.counters.resultHits++
      return copy(hit.verification)
    }
    this.counters.resultMisses++
    const parsed = parseTdxQuote(quote)

    const { collateral, expiresAtMs } = await this.collateralFor(quote, nowMs)
    let report
    try {
      report = verify(quote, collateral, Math.floor(nowMs / 1000))
    } catch (err) {
      const message = (err as Error).message
      throw new AttestationError(classify(message), `DCAP: ${message}`, { cause: err })
    }
    const td = report.report.asTd10()
    if (td == null) throw new AttestationError('malformed', 'DCAP: the quote does not carry a TD report')
    const measurements: Measurements = {
      mrtd: new Uint8Array(td.mrTd),
      rtmr: [new Uint8Array(td.rtMr0), new Uint8Array(td.rtMr1), new Uint8Array(td.rtMr2), new Uint8Array(td.rtMr3)]
    }
    const verification: QuoteVerification = {
      kind: 'tdx',
      measurements,
      reportData: new Uint8Array(td.reportData),
      tdAttributes: parsed.tdAttributes,
      debug: (parsed.tdAttributes[0] & 1) === 1,
      tcbStatus: report.status,
      advisoryIds: [...report.advisory_ids]
    }
    this.remember(key, { verification, verifiedAtMs: nowMs, expiresAtMs: Math.min(expiresAtMs, nowMs + this.maxResultAgeMs) })
    return copy(verification)
  }

  /** Cache counters, for benchmarks and metrics. */
  stats (): DcapStats {
    return { ...this.counters }
  }

  private remember (key: string, entry: CachedResult): void {
    this.results.delete(key)
    this.results.set(key, entry)
    // Maps iterate in insertion order, so the first key is the oldest entry.
    while (this.results.size > this.maxCachedResults) {
      const oldest = this.results.keys().next().value
      if (oldest == null) break
      this.results.delete(oldest)
    }
  }

  private async collateralFor (quote: Uint8Array, nowMs: number): Promise<CachedCollateral> {
    let dcapQuote: Quote
    try {
      dcapQuote = Quote.parse(quote)
    } catch (err) {
      throw new AttestationError('malformed', `DCAP: cannot parse the quote: ${(err as Error).message}`, { cause: err })
    }
    const key = platformKey(dcapQuote)
    if (key == null) return this.fetch(quote)
    const cached = this.collaterals.get(key)
    if (cached != null && nowMs < cached.expiresAtMs) {
      this.counters.collateralHits++
      return cached
    }
    // Concurrent verifications for one platform share a single fetch.
    let pending = this.fetching.get(key)
    if (pending == null) {
      pending = this.fetch(quote).finally(() => { this.fetching.delete(key) })
      this.fetching.set(key, pending)
    }
    const fetched = await pending
    if (nowMs < fetched.expiresAtMs) this.collaterals.set(key, fetched)
    return fetched
  }

  private async fetch (quote: Uint8Array): Promise<CachedCollateral> {
    this.counters.collateralFetches++
    let collateral: Collateral
    try {
      collateral = await this.source(quote)
    } catch (err) {
      if (err instanceof AttestationError) throw err
      throw new AttestationError('collateral', `cannot obtain collateral: ${(err as Error).message}`, { cause: err })
    }
    return { collateral, expiresAtMs: collateralExpiry(collateral) }
  }
}

/** FMSPC and CA of the quote's PCK certificate; undefined when the quote does not embed it. */
function platformKey (quote: Quote): string | undefined {
  try {
    return `${bytesToHex(intel.getFmspc(quote))}/${intel.getCa(quote)}`
  } catch {
    return undefined
  }
}

/** The earlier `nextUpdate` of the TCB info and the QE identity, in unix ms. */
export function collateralExpiry (collateral: Collateral): number {
  return Math.min(nextUpdate(collateral.tcb_info, 'TCB info'), nextUpdate(collateral.qe_identity, 'QE identity'))
}

function nextUpdate (json: string, what: string): number {
  let value: unknown
  try {
    value = (JSON.parse(json) as { nextUpdate?: unknown }).nextUpdate
  } catch (err) {
    throw new AttestationError('collateral', `collateral ${what} is not JSON`, { cause: err })
  }
  const ms = typeof value === 'string' ? Date.parse(value) : NaN
  if (!Number.isFinite(ms)) throw new AttestationError('collateral', `collateral ${what} has no valid nextUpdate (${JSON.stringify(value)})`)
  return ms
}

/** Maps dcap-qvl's error messages (plain Errors) to why the quote is refused. */
export function classify (message: string): AttestationFailure {
  if (/expired|issue date is in the future|not yet valid/i.test(message)) return 'collateral'
  if (/decode TcbInfo|decode QeIdentity|non-(TDX|SGX) TCB info|Fmspc mismatch|QE Identity id\/version|No (SGX|TDX) components/i.test(message)) return 'collateral'
  if (/decode quote|Unsupported (DCAP|auth data|cert|quote|body)|must have version|Not enough data|Invalid TEE type|Failed to get TD10/i.test(message)) return 'malformed'
  if (/TCB status is invalid|No matching TCB level|QE ISVSVN|No TCB levels/i.test(message)) return 'tcb'
  if (/Debug mode|Reserved bits|SEPT_VE_DISABLE|mr service td/i.test(message)) return 'policy'
  // Everything else is a signature, certificate, revocation or QE report check that failed.
  return 'signature'
}

function copy (v: QuoteVerification): QuoteVerification {
  return {
    ...v,
    measurements: { mrtd: v.measurements.mrtd.slice(), rtmr: [v.measurements.rtmr[0].slice(), v.measurements.rtmr[1].slice(), v.measurements.rtmr[2].slice(), v.measurements.rtmr[3].slice()] },
    reportData: v.reportData.slice(),
    tdAttributes: v.tdAttributes.slice(),
    advisoryIds: [...v.advisoryIds]
  }
}

/**
 * Which evidence each network accepts, and the check that applies a policy
 * to a verified quote. A local (development) network takes simulated
 * evidence, any measurements and any TCB level a developer's machine might
 * have; the public network takes only real TDX on a platform whose TCB is
 * current, with no debug TDs. Refusals name exactly what was refused, so an
 * operator can tell an outdated platform from a wrong image.
 */
import { bytesToHex } from '@noble/hashes/utils.js'
import { AttestationError, ConfigError } from '../errors.js'
import { imageHash } from './binding.js'
import type { NetworkId } from '../p2p/networks.js'
import type { AttestationPolicy, QuoteVerification } from './types.js'

/** TCB statuses a development network tolerates: everything that still verifies, short of Revoked. */
export const DEV_TCB_STATUSES: readonly string[] = ['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded', 'OutOfDate']
/** TCB statuses of a platform with current microcode and firmware. */
export const PRODUCTION_TCB_STATUSES: readonly string[] = ['UpToDate', 'SWHardeningNeeded']

const DEFAULTS: Record<NetworkId, AttestationPolicy> = {
  local: {
    name: 'local',
    acceptKinds: ['simulated', 'tdx'],
    allowedMrtd: [],
    allowedRtmr: [[], [], [], []],
    allowedImageHashes: [],
    acceptedTcbStatuses: [...DEV_TCB_STATUSES],
    allowDebug: true,
    epochTolerance: 1
  },
  public: {
    name: 'public',
    acceptKinds: ['tdx'],
    allowedMrtd: [],
    allowedRtmr: [[], [], [], []],
    allowedImageHashes: [],
    acceptedTcbStatuses: [...PRODUCTION_TCB_STATUSES],
    allowDebug: false,
    epochTolerance: 1
  }
}

const MEASUREMENT_HEX = /^[0-9a-f]{96}$/
const IMAGE_HASH_HEX = /^[0-9a-f]{64}$/

/**
 * The policy of a network, with `overrides` applied. Allow-list entries are
 * lower-cased; one that is not hex of the right length is a ConfigError
 * (it could never match, which would silently refuse every node).
 */
export function policyFor (network: NetworkId, overrides: Partial<AttestationPolicy> = {}): AttestationPolicy {
  const base = DEFAULTS[network]
  const merged: AttestationPolicy = { ...base, ...overrides }
  const policy: AttestationPolicy = {
    ...merged,
    acceptKinds: [...merged.acceptKinds],
    allowedMrtd: hexList(merged.allowedMrtd, MEASUREMENT_HEX, 'attestation.allowedMrtd', 'an MRTD (96 hex digits)'),
    allowedRtmr: [0, 1, 2, 3].map(i => hexList(merged.allowedRtmr[i] ?? [], MEASUREMENT_HEX, `attestation.allowedRtmr[${i}]`, 'an RTMR (96 hex digits)')) as AttestationPolicy['allowedRtmr'],
    allowedImageHashes: hexList(merged.allowedImageHashes, IMAGE_HASH_HEX, 'attestation.allowedImageHashes', 'an image hash (64 hex digits)'),
    acceptedTcbStatuses: [...merged.acceptedTcbStatuses]
  }
  if (!Number.isSafeInteger(policy.epochTolerance) || policy.epochTolerance < 0) {
    throw new ConfigError('attestation.epochTolerance', `expected a whole number of epochs, at least 0 (got ${String(policy.epochTolerance)})`)
  }
  return policy
}

/**
 * Throws AttestationError('policy') for a kind, debug TD or measurement the
 * policy does not allow, and AttestationError('tcb') for a TCB status it
 * does not accept. Simulated evidence has no TCB status to judge: accepting
 * the kind accepts it.
 */
export function checkPolicy (policy: AttestationPolicy, verification: QuoteVerification): void {
  const on = `on the ${policy.name} network`
  if (!policy.acceptKinds.includes(verification.kind)) {
    throw new AttestationError('policy', `${verification.kind} evidence is not accepted ${on}`)
  }
  if (verification.debug && !policy.allowDebug) {
    throw new AttestationError('policy', `a debug TD (TDATTRIBUTES ${bytesToHex(verification.tdAttributes)}) is not accepted ${on}`)
  }
  if (verification.kind === 'tdx' && !policy.acceptedTcbStatuses.includes(verification.tcbStatus)) {
    const advisories = verification.advisoryIds.length > 0 ? ` (advisories ${verification.advisoryIds.join(', ')})` : ''
    throw new AttestationError('tcb', `TCB status ${verification.tcbStatus}${advisories} is not accepted ${on}; accepted: ${policy.acceptedTcbStatuses.join(', ')}`)
  }
  const { mrtd, rtmr } = verification.measurements
  allowed(policy.allowedMrtd, bytesToHex(mrtd), 'MRTD', on)
  rtmr.forEach((value, i) => { allowed(policy.allowedRtmr[i], bytesToHex(value), `RTMR${i}`, on) })
  allowed(policy.allowedImageHashes, imageHash(verification.measurements), 'image hash', on)
}

function allowed (list: string[], value: string, what: string, on: string): void {
  if (list.length > 0 && !list.includes(value)) {
    throw new AttestationError('policy', `${what} ${value} is not in the allow-list ${on}`)
  }
}

function hexList (list: string[], pattern: RegExp, key: string, what: string): string[] {
  return list.map((entry, i) => {
    const hex = entry.toLowerCase()
    if (!pattern.test(hex)) throw new ConfigError(`${key}[${i}]`, `expected ${what} (got ${JSON.stringify(entry)})`)
    return hex
  })
}

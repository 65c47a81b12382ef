/**
 * What a quote commits to. REPORTDATA (64 bytes, signed by the TEE) is a
 * SHA-512 over the node's libp2p public key, its X25519 job key and a
 * freshness value, so evidence cannot be replayed by another peer, for
 * another job key, or outside its nonce or epoch. The attestation digest
 * names "this node's evidence" independently of freshness, so capacity
 * announcements can carry it and a verifier can match it to any fresh quote.
 *
 * Every encoding is domain-separated and length-prefixed: no two different
 * inputs share an encoding, and no other Cocoon hash can collide with these.
 */
import { sha256, sha512 } from '@noble/hashes/sha2.js'
import { bytesToHex, concatBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { AttestationError } from '../errors.js'
import { assertLength, MEASUREMENT_LENGTH } from './quote.js'
import type { EvidenceKind, Freshness, Measurements } from './types.js'

export const REPORT_DATA_DOMAIN = 'cocoon-p2p/attest/v1'
export const DIGEST_DOMAIN = 'cocoon-p2p/attest-digest/v1'

/** Length of an epoch: epoch-fresh evidence can be passed on for about this long. */
export const EPOCH_SECONDS = 3600
export const JOB_KEY_LENGTH = 32
export const NONCE_MIN_BYTES = 16
export const NONCE_MAX_BYTES = 64

const FRESHNESS_NONCE = 1
const FRESHNESS_EPOCH = 2

/** The epoch a unix time (ms) falls in. */
export function epochAt (nowMs: number): number {
  return Math.floor(nowMs / 1000 / EPOCH_SECONDS)
}

export interface BindingInput {
  /** The libp2p public key, protobuf-encoded (as in a PeerId). */
  libp2pPublicKey: Uint8Array
  jobPublicKey: Uint8Array
  freshness: Freshness
}

/** The 64 bytes of REPORTDATA that bind a quote to this peer, job key and freshness. */
export function reportDataFor ({ libp2pPublicKey, jobPublicKey, freshness }: BindingInput): Uint8Array {
  checkLibp2pKey(libp2pPublicKey)
  assertLength(jobPublicKey, JOB_KEY_LENGTH, 'job public key')
  return sha512(concatBytes(
    lengthPrefixed(utf8ToBytes(REPORT_DATA_DOMAIN)),
    lengthPrefixed(libp2pPublicKey),
    lengthPrefixed(jobPublicKey),
    encodeFreshness(freshness)
  ))
}

/** sha256 over MRTD ‖ RTMR0 ‖ … ‖ RTMR3, lower-case hex: one name for a whole image. */
export function imageHash (measurements: Measurements): string {
  checkMeasurements(measurements)
  return bytesToHex(sha256(concatBytes(measurements.mrtd, ...measurements.rtmr)))
}

export interface DigestInput {
  kind: EvidenceKind
  measurements: Measurements
  jobPublicKey: Uint8Array
  libp2pPublicKey: Uint8Array
}

/** 32 bytes naming a node's evidence independently of freshness: what capacity announcements carry. */
export function attestationDigest ({ kind, measurements, jobPublicKey, libp2pPublicKey }: DigestInput): Uint8Array {
  checkMeasurements(measurements)
  checkLibp2pKey(libp2pPublicKey)
  assertLength(jobPublicKey, JOB_KEY_LENGTH, 'job public key')
  return sha256(concatBytes(
    lengthPrefixed(utf8ToBytes(DIGEST_DOMAIN)),
    lengthPrefixed(utf8ToBytes(kind)),
    lengthPrefixed(measurements.mrtd),
    ...measurements.rtmr.map(lengthPrefixed),
    lengthPrefixed(jobPublicKey),
    lengthPrefixed(libp2pPublicKey)
  ))
}

function encodeFreshness (freshness: Freshness): Uint8Array {
  if (freshness.kind === 'nonce') {
    const { nonce } = freshness
    if (!(nonce instanceof Uint8Array) || nonce.length < NONCE_MIN_BYTES || nonce.length > NONCE_MAX_BYTES) {
      throw new AttestationError('malformed', `nonce must be ${NONCE_MIN_BYTES}-${NONCE_MAX_BYTES} bytes (got ${nonce instanceof Uint8Array ? nonce.length : typeof nonce})`)
    }
    return concatBytes(Uint8Array.of(FRESHNESS_NONCE), lengthPrefixed(nonce))
  }
  if (freshness.kind === 'epoch') {
    const { epoch } = freshness
    if (!Number.isSafeInteger(epoch) || epoch < 0) {
      throw new AttestationError('malformed', `epoch must be a non-negative integer (got ${String(epoch)})`)
    }
    const value = new Uint8Array(8)
    new DataView(value.buffer).setBigUint64(0, BigInt(epoch), false)
    return concatBytes(Uint8Array.of(FRESHNESS_EPOCH), lengthPrefixed(value))
  }
  throw new AttestationError('malformed', `unknown freshness kind ${JSON.stringify((freshness as { kind: unknown }).kind)}`)
}

function checkLibp2pKey (key: Uint8Array): void {
  if (!(key instanceof Uint8Array) || key.length === 0) throw new AttestationError('malformed', 'libp2p public key is empty')
}

function checkMeasurements (measurements: Measurements): void {
  assertLength(measurements.mrtd, MEASUREMENT_LENGTH, 'MRTD')
  if (!Array.isArray(measurements.rtmr) || measurements.rtmr.length !== 4) {
    throw new AttestationError('malformed', 'measurements must have four RTMRs')
  }
  measurements.rtmr.forEach((rtmr, i) => { assertLength(rtmr, MEASUREMENT_LENGTH, `RTMR${i}`) })
}

/** u32 big-endian length ‖ bytes: the unit of every encoding hashed here and in simulated.ts. */
export function lengthPrefixed (bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + bytes.length)
  new DataView(out.buffer).setUint32(0, bytes.length, false)
  out.set(bytes, 4)
  return out
}

/**
 * End-to-end sealing of a job between a client and the worker's attested
 * X25519 job key, in the manner of HPKE base mode: the client makes an
 * ephemeral key pair, agrees a secret with the worker's key, and derives
 * (HKDF-SHA256) one key for the request and one for the response stream.
 * Both directions use ChaCha20-Poly1305 with the message's sequence number
 * as the nonce, so a chunk that is altered, replayed, reordered or taken
 * from another job fails to open. The request is bound to the job's clear
 * header through the AEAD's associated data, so a proxy that rewrites the
 * model or the token limit breaks the seal.
 *
 * A proxy relays `enc` and the ciphertexts but never holds a key that opens
 * them: the only secrets are the ephemeral private key (client memory) and
 * the job key (the worker's TEE).
 */
import { SealError } from '../errors.js'
import { portableSealPrimitives } from './seal-portable.js'
import type { SealPrimitives } from './seal-primitives.js'

const SUITE = 'cocoon/seal/v1 x25519 hkdf-sha256 chacha20-poly1305'
const SUITE_BYTES = new TextEncoder().encode(SUITE)
const KEY_BYTES = 32
const TAG_BYTES = 16
const NONCE_BYTES = 12
/** Nonce space of the response stream; far above any job's chunk count. */
const MAX_SEQ = 0xffffffff

export interface Sealed {
  /** The ephemeral public key, sent in clear. */
  enc: Uint8Array
  ciphertext: Uint8Array
}

/** The client's half after sealing: opens the worker's response chunks in order. */
export interface ResponseOpener {
  /** `aad`: clear data the chunk travels with and the worker sealed over (e.g. its token count). */
  open(seq: number, ciphertext: Uint8Array, aad?: Uint8Array): Uint8Array
}

/** The worker's half after opening: seals response chunks. */
export interface ResponseSealer {
  seal(seq: number, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array
}

let primitives: SealPrimitives = portableSealPrimitives

/** Puts faster primitives (the same algorithms) in place of the portable ones. */
export function useSealPrimitives (p: SealPrimitives): void {
  primitives = p
}

interface Keys { request: Uint8Array, response: Uint8Array }

function deriveKeys (shared: Uint8Array, enc: Uint8Array, recipient: Uint8Array, context: Uint8Array): Keys {
  if (shared.every(b => b === 0)) throw new SealError('the job key is a low-order point')
  const info = concat([SUITE_BYTES, enc, recipient, context])
  const okm = primitives.hkdfSha256(shared, SUITE_BYTES, info, KEY_BYTES * 2)
  return { request: okm.subarray(0, KEY_BYTES), response: okm.subarray(KEY_BYTES) }
}

function nonceFor (seq: number): Uint8Array {
  if (!Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) throw new SealError(`sequence number ${seq} out of range`)
  const nonce = new Uint8Array(NONCE_BYTES)
  new DataView(nonce.buffer).setUint32(NONCE_BYTES - 4, seq)
  return nonce
}

function encrypt (key: Uint8Array, seq: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  return primitives.seal(key, nonceFor(seq), plaintext, aad)
}

function decrypt (key: Uint8Array, seq: number, ciphertext: Uint8Array, aad: Uint8Array, what: string): Uint8Array {
  if (ciphertext.byteLength < TAG_BYTES) throw new SealError(`${what} is shorter than its tag`)
  const plaintext = primitives.open(key, nonceFor(seq), ciphertext, aad)
  if (plaintext == null) throw new SealError(`${what} failed authentication (tampered, out of order, or sealed to another key)`)
  return plaintext
}

function concat (parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}

const EMPTY = new Uint8Array(0)

/**
 * Seals `plaintext` to `recipient` (the worker's X25519 job key).
 * `context` separates jobs (the request id); `aad` is the clear header the
 * seal must cover.
 */
export function sealRequest (recipient: Uint8Array, plaintext: Uint8Array, context: Uint8Array, aad: Uint8Array): { sealed: Sealed, opener: ResponseOpener } {
  if (recipient.byteLength !== 32) throw new SealError(`a job key is 32 bytes (got ${recipient.byteLength})`)
  const { enc, shared } = primitives.ephemeralAgreement(recipient, 'the job key')
  const keys = deriveKeys(shared, enc, recipient, context)
  const ciphertext = encrypt(keys.request, 0, plaintext, aad)
  let next = 0
  return {
    sealed: { enc, ciphertext },
    opener: {
      open (seq, chunk, aad = EMPTY) {
        // chunks must arrive in order: a skipped one is a dropped one
        if (seq !== next) throw new SealError(`response chunk ${seq} arrived where ${next} was expected`)
        const plain = decrypt(keys.response, seq, chunk, aad, `response chunk ${seq}`)
        next++
        return plain
      }
    }
  }
}

/** Opens a sealed request with the worker's job key; returns the plaintext and the response sealer. */
export function openRequest (privateKey: Uint8Array, publicKey: Uint8Array, sealed: Sealed, context: Uint8Array, aad: Uint8Array): { plaintext: Uint8Array, sealer: ResponseSealer } {
  if (sealed.enc.byteLength !== 32) throw new SealError(`the ephemeral key is 32 bytes (got ${sealed.enc.byteLength})`)
  if (privateKey.byteLength !== 32 || publicKey.byteLength !== 32) throw new SealError('the job key pair must be 32-byte X25519 keys')
  const shared = primitives.x25519(privateKey, sealed.enc, 'the ephemeral key')
  const keys = deriveKeys(shared, sealed.enc, publicKey, context)
  const plaintext = decrypt(keys.request, 0, sealed.ciphertext, aad, 'the sealed request')
  return {
    plaintext,
    sealer: { seal: (seq, chunk, aad = EMPTY) => encrypt(keys.response, seq, chunk, aad) }
  }
}

/** SHA-256, through the same primitives (OpenSSL on Node). */
export function sha256 (bytes: Uint8Array): Uint8Array {
  return primitives.sha256(bytes)
}

/** A random request id: 32 hex digits. */
export function randomRequestId (): string {
  const bytes = globalThis.crypto.getRandomValues(new Uint8Array(16))
  return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('')
}

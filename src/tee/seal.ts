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
import { createCipheriv, createDecipheriv, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, randomBytes } from 'node:crypto'
import { SealError } from '../errors.js'

const SUITE = 'cocoon/seal/v1 x25519 hkdf-sha256 chacha20-poly1305'
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

interface Keys { request: Buffer, response: Buffer }

function deriveKeys (shared: Uint8Array, enc: Uint8Array, recipient: Uint8Array, context: Uint8Array): Keys {
  if (shared.every(b => b === 0)) throw new SealError('the job key is a low-order point')
  const info = Buffer.concat([Buffer.from(SUITE), enc, recipient, context])
  const okm = Buffer.from(hkdfSync('sha256', shared, Buffer.from(SUITE), info, KEY_BYTES * 2))
  return { request: okm.subarray(0, KEY_BYTES), response: okm.subarray(KEY_BYTES) }
}

function nonceFor (seq: number): Buffer {
  if (!Number.isInteger(seq) || seq < 0 || seq > MAX_SEQ) throw new SealError(`sequence number ${seq} out of range`)
  const nonce = Buffer.alloc(NONCE_BYTES)
  nonce.writeUInt32BE(seq, NONCE_BYTES - 4)
  return nonce
}

function encrypt (key: Buffer, seq: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const cipher = createCipheriv('chacha20-poly1305', key, nonceFor(seq), { authTagLength: TAG_BYTES })
  cipher.setAAD(aad, { plaintextLength: plaintext.byteLength })
  const body = cipher.update(plaintext)
  cipher.final()
  return Buffer.concat([body, cipher.getAuthTag()])
}

function decrypt (key: Buffer, seq: number, ciphertext: Uint8Array, aad: Uint8Array, what: string): Uint8Array {
  if (ciphertext.byteLength < TAG_BYTES) throw new SealError(`${what} is shorter than its tag`)
  const decipher = createDecipheriv('chacha20-poly1305', key, nonceFor(seq), { authTagLength: TAG_BYTES })
  const body = ciphertext.subarray(0, ciphertext.byteLength - TAG_BYTES)
  decipher.setAAD(aad, { plaintextLength: body.byteLength })
  decipher.setAuthTag(ciphertext.subarray(ciphertext.byteLength - TAG_BYTES))
  const plaintext = decipher.update(body)
  try {
    decipher.final()
  } catch (err) {
    throw new SealError(`${what} failed authentication (tampered, out of order, or sealed to another key)`, { cause: err })
  }
  return plaintext
}

const EMPTY = new Uint8Array(0)

// X25519 through node:crypto (OpenSSL): ~25x faster than a pure-JS ladder,
// which matters on every job. Raw 32-byte keys travel as JWK.
function publicKeyObject (raw: Uint8Array, what: string): ReturnType<typeof createPublicKey> {
  try {
    return createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(raw).toString('base64url') }, format: 'jwk' })
  } catch (err) {
    throw new SealError(`${what} is not a valid X25519 public key`, { cause: err })
  }
}

function agree (privateKey: ReturnType<typeof createPrivateKey>, publicKey: Uint8Array, what: string): Uint8Array {
  try {
    return diffieHellman({ privateKey, publicKey: publicKeyObject(publicKey, what) })
  } catch (err) {
    if (err instanceof SealError) throw err
    // OpenSSL refuses an all-zero result: a low-order point
    throw new SealError(`${what} is a low-order point`, { cause: err })
  }
}

/**
 * Seals `plaintext` to `recipient` (the worker's X25519 job key).
 * `context` separates jobs (the request id); `aad` is the clear header the
 * seal must cover.
 */
export function sealRequest (recipient: Uint8Array, plaintext: Uint8Array, context: Uint8Array, aad: Uint8Array): { sealed: Sealed, opener: ResponseOpener } {
  if (recipient.byteLength !== 32) throw new SealError(`a job key is 32 bytes (got ${recipient.byteLength})`)
  const ephemeral = generateKeyPairSync('x25519')
  const enc = Buffer.from(ephemeral.publicKey.export({ format: 'jwk' }).x as string, 'base64url')
  const shared = agree(ephemeral.privateKey, recipient, 'the job key')
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
  const ownKey = createPrivateKey({
    key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(privateKey).toString('base64url'), x: Buffer.from(publicKey).toString('base64url') },
    format: 'jwk'
  })
  const shared = agree(ownKey, sealed.enc, 'the ephemeral key')
  const keys = deriveKeys(shared, sealed.enc, publicKey, context)
  const plaintext = decrypt(keys.request, 0, sealed.ciphertext, aad, 'the sealed request')
  return {
    plaintext,
    sealer: { seal: (seq, chunk, aad = EMPTY) => encrypt(keys.response, seq, chunk, aad) }
  }
}

/** Random bytes for request ids. */
export function randomRequestId (): string {
  return randomBytes(16).toString('hex')
}

/** The seal's primitives from `@noble/*`: pure JavaScript, for browsers and anywhere else. */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js'
import { x25519 } from '@noble/curves/ed25519.js'
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { SealError } from '../errors.js'
import type { SealPrimitives } from './seal-primitives.js'

export const portableSealPrimitives: SealPrimitives = {
  ephemeralAgreement (recipient, what) {
    const privateKey = x25519.utils.randomSecretKey()
    return { enc: x25519.getPublicKey(privateKey), shared: portableSealPrimitives.x25519(privateKey, recipient, what) }
  },
  x25519 (privateKey, publicKey, what) {
    if (publicKey.byteLength !== 32) throw new SealError(`${what} is not a valid X25519 public key`)
    try {
      return x25519.getSharedSecret(privateKey, publicKey)
    } catch (err) {
      // noble refuses an all-zero result: a low-order point
      throw new SealError(`${what} is a low-order point`, { cause: err })
    }
  },
  hkdfSha256: (ikm, salt, info, length) => hkdf(sha256, ikm, salt, info, length),
  sha256: (bytes) => sha256(bytes),
  seal: (key, nonce, plaintext, aad) => chacha20poly1305(key, nonce, aad).encrypt(plaintext),
  open (key, nonce, ciphertext, aad) {
    try {
      return chacha20poly1305(key, nonce, aad).decrypt(ciphertext)
    } catch {
      return null
    }
  }
}

/**
 * The ed25519 key a node signs channel states with. It is neither the libp2p
 * identity nor the wallet key: a leaked channel key can sign states for this
 * node's open channels only, never move its wallet's funds.
 *
 * Portable (browsers included): the primitives default to `@noble/curves`;
 * on Node, `channel-key-node.ts` puts OpenSSL's in their place (an order of
 * magnitude faster) and keeps the key in the data dir.
 */
import { ed25519 } from '@noble/curves/ed25519.js'

/** Ed25519 over raw 32-byte keys and 64-byte signatures. */
export interface Ed25519Primitives {
  /** The raw public key of `seed` and a function that signs with it. */
  signer(seed: Uint8Array): { publicKey: Uint8Array, sign(message: Uint8Array): Uint8Array }
  /** False (never throws) for a bad signature or any malformed input. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean
}

export const portableEd25519: Ed25519Primitives = {
  signer (seed) {
    const secret = Uint8Array.from(seed)
    return { publicKey: ed25519.getPublicKey(secret), sign: (message) => ed25519.sign(message, secret) }
  },
  verify (publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false
    try {
      return ed25519.verify(signature, message, publicKey)
    } catch {
      return false
    }
  }
}

let primitives: Ed25519Primitives = portableEd25519

/** Puts faster primitives (the same algorithm) in place of the portable ones, for keys made from now on. */
export function useEd25519Primitives (p: Ed25519Primitives): void {
  primitives = p
}

export class ChannelKey {
  readonly publicKey: Uint8Array
  private readonly signWith: (message: Uint8Array) => Uint8Array

  private constructor (seed: Uint8Array) {
    const signer = primitives.signer(seed)
    this.publicKey = signer.publicKey
    this.signWith = signer.sign
  }

  static fromSeed (seed: Uint8Array): ChannelKey {
    if (seed.length !== 32) throw new RangeError(`an ed25519 seed is 32 bytes, not ${seed.length}`)
    return new ChannelKey(seed)
  }

  static generate (): ChannelKey {
    return ChannelKey.fromSeed(globalThis.crypto.getRandomValues(new Uint8Array(32)))
  }

  /** A 64-byte ed25519 signature over `message` (for states: the 32-byte cell hash). */
  sign (message: Uint8Array): Uint8Array {
    return this.signWith(message)
  }
}

/** Checks an ed25519 signature by a raw 32-byte public key; false (never throws) for any malformed input. */
export function verifySignature (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  return primitives.verify(publicKey, message, signature)
}

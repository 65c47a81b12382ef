/**
 * The ed25519 key a node signs channel states with (`channel.key` in the
 * data dir, 32-byte seed, mode 0600). It is neither the libp2p identity nor
 * the wallet key: a leaked channel key can sign states for this node's open
 * channels only, never move its wallet's funds. Signing runs through
 * OpenSSL (node:crypto), an order of magnitude faster than a JS ed25519.
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto'
import { join } from 'node:path'
import { IdentityError } from '../errors.js'
import { createSecretFile, readSecretFile } from '../ops/secret-file.js'
import type { KeyObject } from 'node:crypto'

export const CHANNEL_KEY_FILE = 'channel.key'

// DER prefixes that wrap a raw ed25519 seed (PKCS#8) and public key (SPKI)
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export class ChannelKey {
  readonly publicKey: Buffer
  private readonly privateKey: KeyObject

  private constructor (privateKey: KeyObject) {
    this.privateKey = privateKey
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
    this.publicKey = Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length))
  }

  static fromSeed (seed: Uint8Array): ChannelKey {
    if (seed.length !== 32) throw new RangeError(`an ed25519 seed is 32 bytes, not ${seed.length}`)
    return new ChannelKey(createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' }))
  }

  static generate (): ChannelKey {
    return ChannelKey.fromSeed(randomBytes(32))
  }

  /** A 64-byte ed25519 signature over `message` (for states: the 32-byte cell hash). */
  sign (message: Uint8Array): Buffer {
    return sign(null, message, this.privateKey)
  }
}

// A node checks the keys of its few channel partners over and over: keep their parsed form.
const PUBLIC_KEY_CACHE_SIZE = 1024
const publicKeys = new Map<string, KeyObject>()

function publicKeyObject (publicKey: Uint8Array): KeyObject {
  const hex = Buffer.from(publicKey).toString('hex')
  let key = publicKeys.get(hex)
  if (key == null) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
    if (publicKeys.size >= PUBLIC_KEY_CACHE_SIZE) publicKeys.delete(publicKeys.keys().next().value as string)
    publicKeys.set(hex, key)
  }
  return key
}

/** Checks an ed25519 signature by a raw 32-byte public key; false (never throws) for any malformed input. */
export function verifySignature (publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false
  try {
    return verify(null, message, publicKeyObject(publicKey), signature)
  } catch {
    return false
  }
}

/** The node's channel key, created on first use. */
export async function loadOrCreateChannelKey (dataDir: string): Promise<ChannelKey> {
  const path = join(dataDir, CHANNEL_KEY_FILE)
  for (let attempt = 0; attempt < 2; attempt++) {
    const existing = await readSecretFile(path)
    if (existing != null) {
      if (existing.length !== 32) throw new IdentityError(path, `holds ${existing.length} bytes, not a 32-byte ed25519 seed; move it away to create a new key (open channels need the old one)`)
      return ChannelKey.fromSeed(existing)
    }
    const seed = randomBytes(32)
    if (await createSecretFile(dataDir, path, seed)) return ChannelKey.fromSeed(seed)
    // another process created it meanwhile: read theirs
  }
  throw new IdentityError(path, 'could not be created or read')
}

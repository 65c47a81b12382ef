/**
 * The channel key on Node: kept in the data dir (`channel.key`, a 32-byte
 * seed, mode 0600) and used through OpenSSL (node:crypto), an order of
 * magnitude faster than a JavaScript ed25519 (`useNodeEd25519Primitives`).
 */
import { createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto'
import { join } from 'node:path'
import { IdentityError } from '../errors.js'
import { createSecretFile, readSecretFile } from '../ops/secret-file.js'
import { ChannelKey, useEd25519Primitives } from './channel-key.js'
import type { Ed25519Primitives } from './channel-key.js'
import type { KeyObject } from 'node:crypto'

export const CHANNEL_KEY_FILE = 'channel.key'

// DER prefixes that wrap a raw ed25519 seed (PKCS#8) and public key (SPKI)
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

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

export const nodeEd25519: Ed25519Primitives = {
  signer (seed) {
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' })
    const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' })
    return { publicKey: new Uint8Array(spki.subarray(SPKI_ED25519_PREFIX.length)), sign: (message) => sign(null, message, privateKey) }
  },
  verify (publicKey, message, signature) {
    if (publicKey.length !== 32 || signature.length !== 64) return false
    try {
      return verify(null, message, publicKeyObject(publicKey), signature)
    } catch {
      return false
    }
  }
}

/** Signs and checks channel states with OpenSSL from now on. */
export function useNodeEd25519Primitives (): void {
  useEd25519Primitives(nodeEd25519)
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

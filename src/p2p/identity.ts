import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { IdentityError } from '../errors.js'
import { createSecretFile, readSecretFile } from '../ops/secret-file.js'
import type { PrivateKey, PeerId } from '@libp2p/interface'

/** File name of the node's private key inside its data dir. */
export const IDENTITY_FILE = 'identity.key'

export interface NodeIdentity {
  privateKey: PrivateKey
  peerId: PeerId
  path: string
  /** True when this call created the key. */
  created: boolean
}

/**
 * Loads the node's Ed25519 key from `<dataDir>/identity.key`, creating it
 * (mode 0600, written atomically) when absent. The same data dir always yields
 * the same PeerId. An unreadable, corrupt or over-exposed key is an
 * `IdentityError`, never silently replaced: replacing it would change who the
 * node is to the rest of the network.
 */
export async function loadOrCreateIdentity (dataDir: string, options: { create?: boolean } = {}): Promise<NodeIdentity> {
  const path = join(dataDir, IDENTITY_FILE)
  const existing = await readIdentity(path)
  if (existing != null) {
    return { privateKey: existing, peerId: peerIdFromPrivateKey(existing), path, created: false }
  }
  if (options.create === false) {
    throw new IdentityError(path, 'no identity here; run `cocoon id --data-dir <dir>` or start a node to create one')
  }
  const privateKey = await generateKeyPair('Ed25519')
  if (await createSecretFile(dataDir, path, privateKeyToProtobuf(privateKey))) {
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey), path, created: true }
  }
  // another process created it between our read and our write: use theirs
  const theirs = await readIdentity(path)
  if (theirs == null) throw new IdentityError(path, 'appeared and vanished while being created; try again')
  return { privateKey: theirs, peerId: peerIdFromPrivateKey(theirs), path, created: false }
}

async function readIdentity (path: string): Promise<PrivateKey | undefined> {
  const bytes = await readSecretFile(path)
  if (bytes == null) return undefined
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new IdentityError(path, 'is not a libp2p private key (protobuf); restore it from a backup or move it away to create a new identity', { cause: err })
  }
}

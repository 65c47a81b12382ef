import { constants as fsConstants } from 'node:fs'
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { IdentityError } from '../errors.js'
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
  await writeIdentity(dataDir, path, privateKey)
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey), path, created: true }
}

async function readIdentity (path: string): Promise<PrivateKey | undefined> {
  let bytes: Uint8Array
  try {
    const info = await stat(path)
    if (!info.isFile()) {
      throw new IdentityError(path, 'is not a regular file')
    }
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new IdentityError(path, `is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${path}`)
    }
    bytes = await readFile(path)
  } catch (err) {
    if (err instanceof IdentityError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new IdentityError(path, `cannot be read (${code ?? String(err)}); check its owner and permissions`, { cause: err })
  }
  try {
    return privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new IdentityError(path, 'is not a libp2p private key (protobuf); restore it from a backup or move it away to create a new identity', { cause: err })
  }
}

async function writeIdentity (dataDir: string, path: string, key: PrivateKey): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const handle = await open(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600)
    try {
      await handle.writeFile(privateKeyToProtobuf(key))
      await handle.sync()
    } finally {
      await handle.close()
    }
    await chmod(tmp, 0o600)
    await rename(tmp, path)
  } catch (err) {
    await unlink(tmp).catch(() => {})
    const code = (err as NodeJS.ErrnoException).code
    throw new IdentityError(path, `cannot be written (${code ?? String(err)}); check that the data dir is writable`, { cause: err })
  }
}

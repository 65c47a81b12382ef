/**
 * The node's X25519 job-encryption key, in `<dataDir>/job.key`. Clients
 * encrypt job payloads to its public half, and every quote commits to that
 * public half, so only code inside the attested TEE can read jobs.
 *
 * Like the identity key it is created once (mode 0600, written atomically)
 * and never silently replaced: a new key would invalidate every attestation
 * peers hold for this node. An unreadable, corrupt or over-exposed file is an
 * IdentityError naming the file and what to do.
 *
 * File format (68 bytes): the ASCII magic `CJK1`, the 32-byte private key,
 * the 32-byte public key. The stored public key lets a load detect a
 * corrupted private key instead of quietly using a different one.
 */
import { join } from 'node:path'
import { x25519 } from '@noble/curves/ed25519.js'
import { equalBytes } from '@noble/curves/utils.js'
import { IdentityError } from '../errors.js'
import { createSecretFile, readSecretFile } from '../ops/secret-file.js'

export const JOB_KEY_FILE = 'job.key'

const MAGIC = new TextEncoder().encode('CJK1')
const KEY_LENGTH = 32
const FILE_LENGTH = MAGIC.length + 2 * KEY_LENGTH

export interface JobKey {
  privateKey: Uint8Array
  publicKey: Uint8Array
  path: string
  /** True when this call created the key. */
  created: boolean
}

/** Loads `<dataDir>/job.key`, creating it when absent. */
export async function loadOrCreateJobKey (dataDir: string): Promise<JobKey> {
  const path = join(dataDir, JOB_KEY_FILE)
  const existing = await readJobKey(path)
  if (existing != null) return { ...existing, path, created: false }
  const privateKey = x25519.utils.randomSecretKey()
  const publicKey = x25519.getPublicKey(privateKey)
  if (await writeJobKey(dataDir, path, privateKey, publicKey)) {
    return { privateKey, publicKey, path, created: true }
  }
  // Another process created the key between our read and our write: use theirs.
  const theirs = await readJobKey(path)
  if (theirs == null) throw new IdentityError(path, 'appeared and vanished while being created; try again')
  return { ...theirs, path, created: false }
}

async function readJobKey (path: string): Promise<{ privateKey: Uint8Array, publicKey: Uint8Array } | undefined> {
  const bytes = await readSecretFile(path)
  if (bytes == null) return undefined
  const corrupt = (why: string): IdentityError =>
    new IdentityError(path, `is not a job key (${why}); restore it from a backup, or move it away to create a new one (peers will have to re-attest this node)`)
  if (bytes.length !== FILE_LENGTH) throw corrupt(`${bytes.length} bytes, expected ${FILE_LENGTH}`)
  if (!equalBytes(bytes.subarray(0, MAGIC.length), MAGIC)) throw corrupt('wrong magic')
  const privateKey = bytes.slice(MAGIC.length, MAGIC.length + KEY_LENGTH)
  const publicKey = bytes.slice(MAGIC.length + KEY_LENGTH)
  if (!equalBytes(x25519.getPublicKey(privateKey), publicKey)) throw corrupt('the public key does not match the private key')
  return { privateKey, publicKey }
}

/** Writes the key; false when a file appeared at `path` meanwhile (it is left alone). */
async function writeJobKey (dataDir: string, path: string, privateKey: Uint8Array, publicKey: Uint8Array): Promise<boolean> {
  const bytes = new Uint8Array(FILE_LENGTH)
  bytes.set(MAGIC)
  bytes.set(privateKey, MAGIC.length)
  bytes.set(publicKey, MAGIC.length + KEY_LENGTH)
  return createSecretFile(dataDir, path, bytes)
}

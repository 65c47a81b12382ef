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
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { chmod, link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { x25519 } from '@noble/curves/ed25519.js'
import { equalBytes } from '@noble/curves/utils.js'
import { IdentityError } from '../errors.js'

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
  let bytes: Uint8Array
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new IdentityError(path, 'is not a regular file')
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
  // A random name, so processes sharing the data dir (even with equal pids, in containers) never collide.
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    const handle = await open(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600)
    try {
      const bytes = new Uint8Array(FILE_LENGTH)
      bytes.set(MAGIC)
      bytes.set(privateKey, MAGIC.length)
      bytes.set(publicKey, MAGIC.length + KEY_LENGTH)
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await chmod(tmp, 0o600)
    // link, unlike rename, fails instead of replacing a key another process wrote meanwhile.
    return await link(tmp, path).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') return false
      throw err
    })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new IdentityError(path, `cannot be written (${code ?? String(err)}); check that the data dir is writable`, { cause: err })
  } finally {
    await unlink(tmp).catch(() => {})
  }
}

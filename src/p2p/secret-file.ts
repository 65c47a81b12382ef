/**
 * Key files in a data dir (the node identity, the job key): read only when
 * they are regular files no other user can read; created with mode 0600,
 * synced, and published with link(), which unlike rename() fails instead of
 * replacing a key another process wrote meanwhile. Every failure is an
 * IdentityError naming the file and what to do.
 */
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { chmod, link, mkdir, open, readFile, stat, unlink } from 'node:fs/promises'
import { IdentityError } from '../errors.js'

/** The file's bytes, or undefined when it does not exist. */
export async function readSecretFile (path: string): Promise<Uint8Array | undefined> {
  try {
    const info = await stat(path)
    if (!info.isFile()) throw new IdentityError(path, 'is not a regular file')
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      throw new IdentityError(path, `is readable by other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 ${path}`)
    }
    return await readFile(path)
  } catch (err) {
    if (err instanceof IdentityError) throw err
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    throw new IdentityError(path, `cannot be read (${code ?? String(err)}); check its owner and permissions`, { cause: err })
  }
}

/** Creates `path` holding `bytes`; false when a file appeared there meanwhile (it is left alone). */
export async function createSecretFile (dir: string, path: string, bytes: Uint8Array): Promise<boolean> {
  // a random name, so processes sharing the data dir (even with equal pids, in containers) never collide
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const handle = await open(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600)
    try {
      await handle.writeFile(bytes)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await chmod(tmp, 0o600)
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

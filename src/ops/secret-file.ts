/**
 * Key files in a data dir (the node identity, the job key): read only when
 * they are regular files no other user can read; created with mode 0600,
 * synced, and published with link() (writeFileAtomic's exclusive mode), which
 * unlike rename() fails instead of replacing a key another process wrote
 * meanwhile. Every failure is an
 * IdentityError naming the file and what to do.
 */
import { mkdir, readFile, stat } from 'node:fs/promises'
import { IdentityError } from '../errors.js'
import { writeFileAtomic } from './atomic-write.js'

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
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    return await writeFileAtomic(path, bytes, { mode: 0o600, exclusive: true })
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new IdentityError(path, `cannot be written (${code ?? String(err)}); check that the data dir is writable`, { cause: err })
  }
}

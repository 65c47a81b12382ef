/**
 * The one way this project writes a file that must never be seen half
 * written (node files, caches, downloaded models, chain state, keys): a temp
 * file beside it with a random name (so processes sharing a directory never
 * collide), created exclusively with its final mode, synced, then published
 * by rename() (replacing what was there) or by link() (never replacing: for
 * keys another process may have created meanwhile), and the directory
 * synced so the new name survives a crash.
 */
import { randomBytes } from 'node:crypto'
import { constants as fsConstants } from 'node:fs'
import { chmod, link, open, rename, unlink } from 'node:fs/promises'
import { dirname } from 'node:path'

export interface AtomicWriteOptions {
  /** The file's mode (default 0644); set exactly, whatever the umask. */
  mode?: number
  /** Publish only where no file exists yet (link): a file already there is left alone and false returned. */
  exclusive?: boolean
}

/** Writes `data` to `path` whole or not at all. False only when `exclusive` and `path` already existed. */
export async function writeFileAtomic (path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<boolean> {
  const mode = options.mode ?? 0o644
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  try {
    const handle = await open(tmp, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, mode)
    try {
      await handle.writeFile(data)
      await handle.sync()
    } finally {
      await handle.close()
    }
    await chmod(tmp, mode)
    if (options.exclusive === true) {
      const linked = await link(tmp, path).then(() => true, (err: NodeJS.ErrnoException) => {
        if (err.code === 'EEXIST') return false
        throw err
      })
      if (!linked) return false
    } else {
      await rename(tmp, path)
    }
    await syncDirectory(dirname(path))
    return true
  } finally {
    // after rename() the temp name is gone; after link() (or a failure) it is removed here
    await unlink(tmp).catch(() => {})
  }
}

async function syncDirectory (dir: string): Promise<void> {
  try {
    const d = await open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch {
    // some filesystems cannot sync a directory; the rename itself is still atomic
  }
}

/**
 * The devnet's files in the data dir: the chain file (the sandbox snapshot,
 * the clock offset and recent transactions), written whole or not at all,
 * and the lock file that keeps the devnet to one process at a time.
 */
import { constants as fsConstants } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'
import { ChainError } from '../../errors.js'
import { writeFileAtomic } from '../../ops/atomic-write.js'
import type { snapshotToSerializable } from '@ton/sandbox'

export const DEVNET_FILE_VERSION = 1

type SerializableSnapshot = ReturnType<typeof snapshotToSerializable>

export interface DevnetFile {
  version: number
  /** seconds added to the wall clock by advanceTime */
  offsetS: number
  /** counts applied sends: the devnet's "block" number */
  seqno: number
  chain: SerializableSnapshot
  /** raw address -> transaction BOCs (base64), newest first */
  txs: Record<string, string[]>
}

export async function readDevnetFile (path: string): Promise<DevnetFile | null> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw new ChainError(`devnet ${path}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err })
  }
  let file: DevnetFile
  try {
    file = JSON.parse(text) as DevnetFile
  } catch (err) {
    throw new ChainError(`devnet ${path}: is not valid JSON; move it away to start a fresh devnet`, { cause: err })
  }
  if (file?.version !== DEVNET_FILE_VERSION || file.chain == null) throw new ChainError(`devnet ${path}: unknown format (version ${String(file?.version)}); move it away to start a fresh devnet`)
  return file
}

/** Writes `path` whole or not at all (the chain state must survive a crash). */
export async function writeAtomically (path: string, text: string): Promise<void> {
  try {
    await writeFileAtomic(path, text, { mode: 0o600 })
  } catch (err) {
    throw new ChainError(`devnet ${path}: cannot be written (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err })
  }
}

/** Takes the devnet's lock file for this process; a stale lock (its process is gone) is taken over. */
export async function acquireLock (path: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, 0o600)
      try {
        await handle.writeFile(`${process.pid}\n`)
      } finally {
        await handle.close()
      }
      return
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ChainError(`devnet lock ${path}: cannot be created (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err })
    }
    const pid = Number.parseInt(await readFile(path, 'utf8').catch(() => ''), 10)
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) {
      throw new ChainError(`the devnet in ${path.replace(/\/[^/]*$/, '')} is in use by process ${pid}${pid === process.pid ? ' (this one: close it first, or share one Devnet)' : ''}; to share one devnet between processes run \`cocoon chain\` and point the nodes at it`)
    }
    await unlink(path).catch(() => {})
  }
  throw new ChainError(`devnet lock ${path}: taken over by another process meanwhile`)
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

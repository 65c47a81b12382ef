/**
 * `<dataDir>/node.json`: written by a running node, removed when it stops.
 * It tells `cocoon status` where the node's admin endpoint is, and lets a
 * local node find the local bootstrap node without flags.
 */
import { randomBytes } from 'node:crypto'
import { readFile, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { writeFileAtomic } from './atomic-write.js'
import { createSecretFile, readSecretFile } from './secret-file.js'

export const NODE_FILE = 'node.json'
/** The token the admin endpoint's actions need (mode 0600, readable by the node's user only). */
export const ADMIN_TOKEN_FILE = 'admin.token'

export async function loadOrCreateAdminToken (dataDir: string): Promise<string> {
  const path = join(dataDir, ADMIN_TOKEN_FILE)
  const existing = await readSecretFile(path)
  if (existing != null) return Buffer.from(existing).toString('utf8').trim()
  const token = randomBytes(24).toString('hex')
  if (await createSecretFile(dataDir, path, Buffer.from(token))) return token
  return Buffer.from(await readSecretFile(path) ?? Buffer.from(token)).toString('utf8').trim()
}

/** The admin token of the node in `dataDir`, for the CLI; undefined when there is none. */
export async function readAdminToken (dataDir: string): Promise<string | undefined> {
  const bytes = await readSecretFile(join(dataDir, ADMIN_TOKEN_FILE))
  return bytes == null ? undefined : Buffer.from(bytes).toString('utf8').trim()
}

export interface NodeFile {
  pid: number
  peerId: string
  role: string
  network: string
  version: string
  /** Full multiaddrs including /p2p/<peer-id>. */
  addrs: string[]
  /** Admin endpoint base URL, e.g. http://127.0.0.1:40123, or null when disabled. */
  admin: string | null
  startedAt: string
}

export async function writeNodeFile (dataDir: string, info: NodeFile): Promise<void> {
  await writeFileAtomic(join(dataDir, NODE_FILE), JSON.stringify(info, null, 2) + '\n')
}

export async function removeNodeFile (dataDir: string, pid = process.pid): Promise<void> {
  const existing = await readNodeFile(dataDir)
  if (existing?.pid === pid) {
    await unlink(join(dataDir, NODE_FILE)).catch(() => {})
  }
}

/** The node file if present and its process is alive; undefined otherwise. */
export async function readNodeFile (dataDir: string): Promise<NodeFile | undefined> {
  let parsed: NodeFile
  try {
    parsed = JSON.parse(await readFile(join(dataDir, NODE_FILE), 'utf8')) as NodeFile
  } catch {
    return undefined
  }
  if (typeof parsed.pid !== 'number' || !isAlive(parsed.pid)) return undefined
  return parsed
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

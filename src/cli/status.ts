import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { NodeNotRunningError } from '../errors.js'
import { cocoonHome } from '../config/load.js'
import { readNodeFile } from '../ops/node-file.js'
import { resolveDataDir } from './id.js'
import type { CliIO } from './main.js'
import type { NodeStatus } from '../roles/runtime.js'

const STATUS_TIMEOUT_MS = 3_000

/** `cocoon status`: asks running nodes' admin endpoints and prints what they know. */
export async function runStatus (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      role: { type: 'string' },
      network: { type: 'string' },
      'data-dir': { type: 'string' },
      admin: { type: 'string' },
      json: { type: 'boolean' }
    },
    strict: true
  })
  const urls = await findAdminUrls(values, io.env)
  const statuses: NodeStatus[] = []
  for (const url of urls) {
    statuses.push(await fetchStatus(url))
  }
  if (values.json === true) {
    io.out(JSON.stringify(statuses.length === 1 && (values.admin != null || values['data-dir'] != null || values.role != null) ? statuses[0] : statuses, null, 2))
  } else {
    io.out(statuses.map(formatStatus).join('\n\n'))
  }
  return 0
}

async function findAdminUrls (values: { role?: string, network?: string, 'data-dir'?: string, admin?: string }, env: NodeJS.ProcessEnv): Promise<string[]> {
  if (values.admin != null) return [values.admin.replace(/\/+$/, '')]
  if (values['data-dir'] != null || values.role != null) {
    const dataDir = resolveDataDir(values, env)
    const file = await readNodeFile(dataDir)
    if (file?.admin == null) {
      throw new NodeNotRunningError(`no running node with an admin endpoint in ${dataDir}; start one with cocoon node --role <role>, or pass --admin <url>`)
    }
    return [file.admin]
  }
  // no target given: every running node under the Cocoon home
  const home = cocoonHome(env)
  const urls: string[] = []
  for (const network of await listDirs(home)) {
    for (const node of await listDirs(join(home, network))) {
      const file = await readNodeFile(join(home, network, node))
      if (file?.admin != null) urls.push(file.admin)
    }
  }
  if (urls.length === 0) {
    throw new NodeNotRunningError(`no running node found under ${home}; start one with cocoon node --role <role>`)
  }
  return urls
}

async function listDirs (dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter(d => d.isDirectory()).map(d => d.name).sort()
  } catch {
    return []
  }
}

export async function fetchStatus (adminUrl: string): Promise<NodeStatus> {
  let res: Response
  try {
    res = await fetch(`${adminUrl}/status`, { signal: AbortSignal.timeout(STATUS_TIMEOUT_MS) })
  } catch (err) {
    throw new NodeNotRunningError(`no node answered at ${adminUrl} (${(err as Error).message})`, { cause: err })
  }
  if (!res.ok) throw new NodeNotRunningError(`${adminUrl}/status answered HTTP ${res.status}`)
  return await res.json() as NodeStatus
}

export function formatStatus (s: NodeStatus): string {
  const lines = [
    `${s.role} ${s.peerId}`,
    `  network    ${s.network}, version ${s.version}, up ${s.uptimeSec}s, pid ${s.pid}`,
    ...s.addrs.map((a, i) => `  ${i === 0 ? 'listening' : '         '}  ${a}`),
    `  dht        ${s.dht.protocol} ${s.dht.mode} mode, ${s.dht.routingTableSize} peer${s.dht.routingTableSize === 1 ? '' : 's'} in routing table`
  ]
  if (s.amino != null) lines.push(`  amino      ${s.amino.routingTableSize} peers in routing table (rendezvous only)`)
  lines.push(`  topics     ${s.topics.map(t => `${t.topic} (${t.subscribers} subscriber${t.subscribers === 1 ? '' : 's'})`).join(', ') || 'none'}`)
  lines.push(`  peers      ${s.peers.length} connected`)
  for (const p of s.peers) {
    lines.push(`    ${p.role.padEnd(9)} ${p.peerId}  ${p.direction.padEnd(8)} ${p.remoteAddr}`)
  }
  const unconnected = s.knownPeers.filter(k => !s.peers.some(p => p.peerId === k.peerId))
  if (unconnected.length > 0) {
    lines.push(`  known      ${unconnected.length} more through gossip`)
    for (const k of unconnected) lines.push(`    ${k.role.padEnd(9)} ${k.peerId}  last seen ${k.lastSeen}`)
  }
  const roleKeys = Object.keys(s.roleStatus)
  if (roleKeys.length > 0) lines.push(`  ${s.role.padEnd(10)} ${JSON.stringify(s.roleStatus)}`)
  return lines.join('\n')
}

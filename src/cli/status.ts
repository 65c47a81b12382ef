import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { NodeNotRunningError } from '../errors.js'
import { cocoonHome } from '../config/load.js'
import { readNodeFile } from '../ops/node-file.js'
import { resolveDataDir } from './id.js'
import type { CliIO } from './io.js'
import type { ProxyRoleStatus } from '../roles/proxy/proxy-role.js'
import type { WorkerRoleStatus } from '../roles/worker/worker-role.js'
import type { NodeStatus } from '../roles/runtime.js'
import { fromNano } from '@ton/core'

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
  if (s.role === 'proxy') lines.push(...formatProxy(s.roleStatus as unknown as ProxyRoleStatus))
  else if (s.role === 'worker') lines.push(...formatWorker(s.roleStatus as unknown as WorkerRoleStatus))
  else if (Object.keys(s.roleStatus).length > 0) lines.push(`  ${s.role.padEnd(10)} ${JSON.stringify(s.roleStatus)}`)
  if (s.settlement != null) lines.push(...formatSettlement(s.settlement))
  return lines.join('\n')
}

function formatSettlement (st: NonNullable<NodeStatus['settlement']>): string[] {
  const wallet = 'error' in st.wallet ? `wallet unavailable: ${st.wallet.error}` : `wallet ${st.wallet.address} ${fromNano(BigInt(st.wallet.balance))} TON`
  const open = st.channels.filter(c => c.status !== 'closed')
  const lines = [`  settlement ${st.chain}, ${wallet}, ${open.length} channel${open.length === 1 ? '' : 's'} open or closing`]
  if (open.length === 0) return lines
  const rows = [['SIDE', 'STATUS', 'DEPOSIT TON', 'PAID TON', 'COUNTERSIGNED', 'SEQNO', 'PEER', 'CHANNEL']]
  for (const c of open) {
    rows.push([c.side, c.status, fromNano(BigInt(c.deposited)), fromNano(BigInt(c.cumulative ?? '0')), fromNano(BigInt(c.countersigned ?? '0')), c.seqno ?? '0', c.peer, c.address])
  }
  return [...lines, ...table(rows)]
}

function table (rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map(r => r[i].length)))
  return rows.map(r => `    ${r.map((cell, i) => i === r.length - 1 ? cell : cell.padEnd(widths[i])).join('  ')}`)
}

function age (ms: number): string {
  return ms < 60_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 60_000)}m`
}

function formatProxy (p: ProxyRoleStatus): string[] {
  const up = p.workers.filter(w => w.state === 'up').length
  const lines = [`  workers    ${p.workers.length} known, ${up} up${p.models.length > 0 ? `; models: ${p.models.map(m => `${m.model} (${m.workers} worker${m.workers === 1 ? '' : 's'}, ${m.freeSlots} free slots)`).join(', ')}` : ''}`]
  const rows = [['MODEL', 'PRICE IN/OUT (nanoTON per 1M)', 'FREE', 'ATTESTATION', 'AGE', 'STATE', 'OK%', 'WORKER']]
  for (const w of p.workers) {
    for (const m of w.models) {
      rows.push([m.name, `${m.pricePromptPerM}/${m.priceCompletionPerM}`, `${m.freeSlots}/${m.maxConcurrent}`, `${w.attestation.kind} ${w.attestation.tcbStatus}`,
        age(w.ageMs), `${w.state}${w.source === 'dht' ? ' (dht)' : ''}`, `${Math.round(w.successRate * 100)}`, w.peerId])
    }
  }
  if (rows.length > 1) lines.push(...table(rows))
  const listed = p.dht.find(k => k.name === 'proxy')
  lines.push(`  dht        ${listed?.provided === true ? 'listed as a proxy' : 'not yet listed as a proxy'}`)
  return lines
}

function formatWorker (w: WorkerRoleStatus): string[] {
  const a = w.announcing
  const lines = [
    `  announces  ${a.gossip ? `on gossip, ${a.published} published` : 'through the DHT only (gossip off)'}, seq ${a.seq ?? '-'}, last ${a.lastAnnouncedAt ?? 'never'}; linked to ${w.proxies.length} prox${w.proxies.length === 1 ? 'y' : 'ies'}`
  ]
  const provided = new Map(a.dht.map(k => [k.name, k.provided]))
  const rows = [['MODEL', 'CONTEXT', 'PRICE IN/OUT (nanoTON per 1M)', 'FREE', 'DHT']]
  for (const m of a.models) {
    rows.push([m.name, String(m.contextLength), `${m.pricePromptPerM}/${m.priceCompletionPerM}`, `${m.freeSlots}/${m.maxConcurrent}`, provided.get(`model:${m.name}`) === true ? 'provided' : 'pending'])
  }
  if (rows.length > 1) lines.push(...table(rows))
  for (const [i, acc] of w.accelerators.entries()) {
    lines.push(`  ${i === 0 ? 'hardware' : '        '}   ${acc.kind} ${acc.name}, ${acc.memoryUsedMiB}/${acc.memoryTotalMiB} MiB, ${acc.utilizationPct}% busy${i === 0 && w.acceleratorSource != null ? ` (${w.acceleratorSource})` : ''}`)
  }
  lines.push(`  attestation ${w.attestation.kind}, image ${w.attestation.imageHash.slice(0, 16)}…, digest ${w.attestation.digest.slice(0, 16)}…`)
  return lines
}

/**
 * `cocoon devnet`: a complete local swarm in one process (a bootstrap node, a
 * proxy, workers and a client) on loopback, with persistent identities under
 * ~/.cocoon/devnet. It waits until every node has found every other and says
 * how long that took; then it keeps running until Ctrl-C (or exits, --once).
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import { cocoonHome, defaults, merge, validate } from '../config/load.js'
import { waitFor } from '../ops/wait-for.js'
import { knowEachOther, startNode } from '../roles/runtime.js'
import { waitForShutdown } from './main.js'
import type { ProxyRole } from '../roles/proxy/proxy-role.js'
import type { CliIO } from './main.js'
import type { NodeConfig } from '../config/schema.js'
import type { RoleName } from '../roles/names.js'
import type { RunningNode } from '../roles/runtime.js'

const MEET_TIMEOUT_MS = 30_000

export async function runDevnet (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      once: { type: 'boolean' },
      workers: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' }
    },
    strict: true
  })
  const workers = values.workers == null ? 2 : Number(values.workers)
  if (!Number.isInteger(workers) || workers < 1 || workers > 16) {
    throw new ConfigError('workers', `expected a whole number from 1 to 16 (got ${JSON.stringify(values.workers)})`)
  }
  const root = values['data-dir'] ?? join(cocoonHome(io.env), 'devnet')
  const logLevel = values['log-level'] ?? 'warn'
  const configFor = (role: RoleName, name: string, bootstrap: string[]): NodeConfig => validate(merge(defaults('local', role, io.env), {
    role,
    network: 'local',
    dataDir: join(root, name),
    listen: ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'],
    announce: [],
    bootstrap,
    useDefaultBootstrap: false,
    logLevel,
    admin: { enabled: true, host: '127.0.0.1', port: 0 },
    dht: { addressFilter: 'all' },
    maxConnections: 300
  }))

  const t0 = performance.now()
  const nodes: RunningNode[] = []
  const stopAll = async (): Promise<void> => { await Promise.all(nodes.map(async n => { await n.stop() })) }
  try {
    const boot = await startNode(configFor('bootstrap', 'bootstrap', []), { consoleWrite: io.err, logPrefix: 'bootstrap' })
    nodes.push(boot)
    const bootAddrs = boot.addrs().filter(a => !a.includes('/ws/'))
    const plan: Array<[RoleName, string]> = [['proxy', 'proxy'], ...Array.from({ length: workers }, (_, i): [RoleName, string] => ['worker', `worker-${i + 1}`]), ['client', 'client']]
    nodes.push(...await Promise.all(plan.map(async ([role, name]) => startNode(configFor(role, name, bootAddrs), { consoleWrite: io.err, logPrefix: name }))))
    const startedMs = performance.now() - t0

    await waitFor(() => knowEachOther(nodes), MEET_TIMEOUT_MS, 'every node to learn every other through presence gossip')
    const meshMs = performance.now() - t0
    const client = nodes[nodes.length - 1]
    await waitFor(() => ((client.role.status().proxies as unknown[] | undefined)?.length ?? 0) > 0, MEET_TIMEOUT_MS, 'the client to find the proxy in the DHT')
    const proxyFoundMs = performance.now() - t0
    const proxy = nodes.find(n => n.config.role === 'proxy')?.role as ProxyRole
    await waitFor(() => proxy.registry.list().filter(w => w.state === 'up').length >= workers, MEET_TIMEOUT_MS, 'the proxy to attest every worker')
    const attestedMs = performance.now() - t0

    io.out(`devnet: ${nodes.length} nodes on loopback (data in ${root})`)
    for (const node of nodes) {
      const status = await node.status()
      io.out(`  ${status.role.padEnd(9)} ${status.peerId}  peers ${String(status.peers.length).padStart(2)}  dht ${String(status.dht.routingTableSize).padStart(2)}  admin ${node.adminUrl ?? '-'}`)
    }
    io.out(`  started in ${Math.round(startedMs)} ms; all nodes knew each other after ${Math.round(meshMs)} ms; client found the proxy through the DHT after ${Math.round(proxyFoundMs)} ms`)
    io.out(`  the proxy attested ${workers} worker${workers === 1 ? '' : 's'} after ${Math.round(attestedMs)} ms:`)
    for (const w of proxy.registry.list()) {
      const offers = w.offers.map(o => `${o.model} at ${o.pricePromptPerM}/${o.priceCompletionPerM} nanoTON per 1M tokens in/out, ${o.freeSlots}/${o.maxConcurrent} free`).join('; ')
      io.out(`    ${w.peerId}  ${w.attestation.kind} attestation (image ${w.attestation.imageHash.slice(0, 12)}…)  ${offers}`)
    }
    io.out(`  bootstrap address for more nodes: ${bootAddrs[0]}`)
    if (values.once === true) {
      await stopAll()
      return 0
    }
    io.out('  running; `cocoon status` shows every node; Ctrl-C stops')
    await waitForShutdown({ stop: stopAll }, io)
    return 0
  } catch (err) {
    await stopAll().catch(() => {})
    throw err
  }
}

/**
 * npm run bench:swarm — a 20-node Cocoon swarm on loopback in one process.
 * Prints node start time, dial time, gossip delivery p50/p99 and resident
 * memory per node, each next to a baseline measured in the same run (a bare
 * libp2p node with the same transport stack; a direct ping round trip), and
 * writes bench/results/swarm.json.
 */
import '../src/polyfills.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { createLibp2p } from 'libp2p'
import { knowThePublishers, startNode } from '../src/roles/runtime.js'
import { heartbeatArrivals, plainLoopbackNode, testConfig, waitFor } from '../test/helpers.js'
import { median, quantile, round, settle, writeResult } from './stats.js'
import type { RoleName } from '../src/config/role-names.js'
import type { RunningNode } from '../src/roles/runtime.js'

const NODES = Number(process.env.BENCH_NODES ?? 20)
const BASELINE_NODES = 10

async function bareNode () {
  return createLibp2p({ ...plainLoopbackNode(), services: { identify: identify(), ping: ping() } })
}

async function main (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'cocoon-bench-'))
  try {
    const config = (role: RoleName, name: string, bootstrap: string[]) => testConfig(role, join(root, name), bootstrap)
    // --- baseline: bare libp2p nodes, same transport, encryption and muxer
    const bare: Array<Awaited<ReturnType<typeof bareNode>>> = []
    const bareStart: number[] = []
    for (let i = 0; i < BASELINE_NODES; i++) {
      const t = performance.now()
      bare.push(await bareNode())
      bareStart.push(performance.now() - t)
    }
    const bareDial: number[] = []
    const pingRtt: number[] = []
    for (let i = 1; i < bare.length; i++) {
      const t = performance.now()
      await bare[0].dial(bare[i].getMultiaddrs()[0])
      bareDial.push(performance.now() - t)
      for (let k = 0; k < 5; k++) pingRtt.push(await bare[0].services.ping.ping(bare[i].peerId))
    }
    await Promise.all(bare.map(async n => { await n.stop() }))

    // --- a Cocoon node starting alone (same conditions as the bare baseline)
    const aloneStart: number[] = []
    for (let i = 0; i < BASELINE_NODES; i++) {
      const t0 = performance.now()
      const n = await startNode(config('worker', `alone-${i}`, []), { metrics: false })
      aloneStart.push(performance.now() - t0)
      await n.stop()
    }
    await settle()
    const rssBefore = process.memoryUsage().rss

    // --- the Cocoon swarm: 1 bootstrap, 2 proxies, clients, the rest workers
    const nodes: RunningNode[] = []
    const startMs: number[] = []
    const swarmStart = performance.now()
    let t = performance.now()
    const boot = await startNode(config('bootstrap', 'bootstrap', []), { metrics: false })
    startMs.push(performance.now() - t)
    nodes.push(boot)
    for (let i = 1; i < NODES; i++) {
      const role: RoleName = i <= 2 ? 'proxy' : i >= NODES - 3 ? 'client' : 'worker'
      t = performance.now()
      nodes.push(await startNode(config(role, `${role}-${i}`, boot.addrs()), { metrics: false }))
      startMs.push(performance.now() - t)
    }
    await waitFor(() => knowThePublishers(nodes), 60_000, 'every node to know the bootstrap nodes and proxies', 5)
    const formedAfterMs = performance.now() - swarmStart
    await settle()
    const rssAfter = process.memoryUsage().rss

    // --- dial: hang up and redial peers (TCP + noise + yamux + identify)
    const dialMs: number[] = []
    const from = nodes[nodes.length - 1]
    for (const target of nodes.slice(1, nodes.length - 1)) {
      await from.node.hangUp(target.peerId)
      await waitFor(() => from.node.getConnections(target.peerId).length === 0, 5_000, 'hang up')
      const addr = target.node.getMultiaddrs()[0]
      const t0 = performance.now()
      await from.node.dial(addr)
      dialMs.push(performance.now() - t0)
    }
    await new Promise(resolve => setTimeout(resolve, 2_000)) // let the mesh re-form

    // --- gossip: every node publishes one heartbeat; time its arrival at every other node
    const gossipMs: number[] = []
    let missing = 0
    for (const sender of nodes) {
      const delivery = await heartbeatArrivals(sender, nodes.filter(n => n !== sender), 5_000)
      gossipMs.push(...delivery.arrivalsMs)
      missing += delivery.missing
      await new Promise(resolve => setTimeout(resolve, 20))
    }

    await Promise.all(nodes.map(async n => { await n.stop() }))

    const result = {
      benchmark: 'swarm',
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      nodes: NODES,
      startMs: { median: round(median(aloneStart)), p99: round(quantile(aloneStart, 0.99)) },
      joinIntoSwarmMs: { median: round(median(startMs)), p99: round(quantile(startMs, 0.99)) },
      baselineBareLibp2pStartMs: { median: round(median(bareStart)) },
      dialMs: { median: round(median(dialMs)), p99: round(quantile(dialMs, 0.99)), samples: dialMs.length },
      baselineBareLibp2pDialMs: { median: round(median(bareDial)) },
      gossipDeliveryMs: { p50: round(median(gossipMs)), p99: round(quantile(gossipMs, 0.99)), samples: gossipMs.length, missing },
      baselinePingRttMs: { median: round(median(pingRtt)) },
      swarmFormedAfterMs: round(formedAfterMs, 0),
      rssPerNodeMiB: round((rssAfter - rssBefore) / NODES / 1024 / 1024),
      rssTotalMiB: round(rssAfter / 1024 / 1024, 1)
    }
    console.log(`swarm benchmark: ${NODES} Cocoon nodes on loopback, one process (${process.version}, ${cpus().length} cpus)`)
    console.log(`  node start        median ${result.startMs.median} ms, p99 ${result.startMs.p99} ms   (bare libp2p node: ${result.baselineBareLibp2pStartMs.median} ms)`)
    console.log(`  start while ${NODES - 1} nodes share the process: median ${result.joinIntoSwarmMs.median} ms, p99 ${result.joinIntoSwarmMs.p99} ms`)
    console.log(`  dial              median ${result.dialMs.median} ms, p99 ${result.dialMs.p99} ms   (bare libp2p: ${result.baselineBareLibp2pDialMs.median} ms)`)
    console.log(`  gossip delivery   p50 ${result.gossipDeliveryMs.p50} ms, p99 ${result.gossipDeliveryMs.p99} ms over ${result.gossipDeliveryMs.samples} deliveries, ${missing} missing   (direct ping RTT: ${result.baselinePingRttMs.median} ms)`)
    console.log(`  swarm formed      every node knew every other after ${result.swarmFormedAfterMs} ms`)
    console.log(`  resident memory   ${result.rssPerNodeMiB} MiB per node (${result.rssTotalMiB} MiB process total)`)
    await writeResult('swarm', result)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

main().then(() => process.exit(0), err => {
  console.error(err)
  process.exit(1)
})

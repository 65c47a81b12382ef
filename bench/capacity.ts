/**
 * npm run bench:capacity — attested capacity on a loopback swarm in one
 * process: BENCH_WORKERS workers (20) and BENCH_PROXIES proxies (3), plus a
 * bootstrap node, started a few at a time, with a progress line every 2 s.
 *
 * Prints and writes bench/results/capacity.json:
 * - ready_ms: from the first node's start until every proxy knows every
 *   worker; steady_p50_ms / steady_p99_ms / first_p99_ms (below);
 *   rss_per_node_mib (the process's RSS growth over the nodes);
 *   event_loop_lag_p99_ms (the one event loop, during the steady window);
 * - announcement-to-registry latency p50/p99 (worker timestamp to the entry
 *   updated in each proxy's registry), first announcements (with the
 *   attestation challenge) and steady state, next to presence-heartbeat
 *   delivery in the same swarm (gossip with no attestation) as the baseline;
 * - quote verification time: a real TDX quote with DCAP collateral, cold
 *   (fresh verifier) and cached (result cache hit), and a simulated quote;
 * - announcements validated per second by one proxy's topic validator (its
 *   attestations cached, as in steady state), next to its presence
 *   validator on the same senders.
 */
import '../src/polyfills.js'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { PRESENCE_TOPIC } from '../src/p2p/constants.js'
import { CapacityAnnouncement, EvidenceKind } from '../src/gen/capacity.pb.js'
import { Presence, Role } from '../src/gen/node.pb.js'
import { packageRoot } from '../src/package-info.js'
import { startNode } from '../src/roles/runtime.js'
import { DcapVerifier } from '../src/tee/dcap.js'
import { SimulatedProvider, SimulatedVerifier, simulatedMeasurements } from '../src/tee/simulated.js'
import { heartbeatArrivals, testConfig, waitFor } from '../test/helpers.js'
import { median, quantile, round, settle, writeResult } from './stats.js'
import type { ProxyRole } from '../src/roles/proxy/proxy-role.js'
import type { WorkerEntry } from '../src/roles/proxy/worker-registry.js'
import type { RunningNode } from '../src/roles/runtime.js'
import type { Collateral } from '../src/tee/dcap.js'
import type { Message } from '@libp2p/gossipsub'

const WORKERS = Number(process.env.BENCH_WORKERS ?? 20)
const PROXIES = Number(process.env.BENCH_PROXIES ?? 3)
const INTERVAL_MS = 1_000
const STEADY_WINDOW_MS = 10_000
/** Nodes starting at once (each start is mostly waiting on its own listeners and dials). */
const PARALLEL_STARTS = Number(process.env.BENCH_PARALLEL_STARTS ?? 8)
const READY_TIMEOUT_MS = Number(process.env.BENCH_READY_TIMEOUT_MS ?? 300_000)
const VERIFY_ROUNDS = 30
const VALIDATE_MESSAGES = 20_000

const percentiles = (v: number[]): { p50: number, p99: number, samples: number } => ({ p50: round(quantile(v, 0.5)), p99: round(quantile(v, 0.99)), samples: v.length })

interface SwarmRun {
  first: number[]
  steady: number[]
  presence: number[]
  presenceMissing: number
  proxies: RunningNode[]
  workers: RunningNode[]
  /** From the first node's start until every proxy knew every worker. */
  readyMs: number
  /** From the last node's start until then. */
  readyAfterLastStartMs: number
  startedAllMs: number
  rssPerNodeMiB: number
  lagFormingP99Ms: number
  lagSteadyP99Ms: number
  connectionsPerWorker: number
  connectionsPerProxy: number
  stop: () => Promise<void>
}

/** Starts `count` nodes with at most `parallel` starting at once (a swarm's nodes start independently). */
async function startMany (count: number, parallel: number, start: (i: number) => Promise<RunningNode>): Promise<RunningNode[]> {
  const out = new Array<RunningNode>(count)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(parallel, count) }, async () => {
    while (next < count) {
      const i = next++
      out[i] = await start(i)
    }
  }))
  return out
}

const mib = (bytes: number): number => bytes / 1024 / 1024

async function swarmLatency (root: string): Promise<SwarmRun> {
  await settle()
  const rssBefore = process.memoryUsage().rss
  const lag = monitorEventLoopDelay({ resolution: 10 })
  lag.enable()
  const t0 = performance.now()
  const bootstrap = await startNode(testConfig('bootstrap', join(root, 'bootstrap'), [], { maxConnections: 2_000 }), { logPrefix: 'bootstrap', metrics: false })
  const boot = bootstrap.addrs()
  const first: number[] = []
  const steady: number[] = []
  let measuringSteady = false
  let phase = 'starting nodes'
  const proxies: RunningNode[] = []
  const workers: RunningNode[] = []
  const progress = setInterval(() => {
    const known = proxies.map(p => (p.role as ProxyRole).registry.size)
    console.log(`  [${((performance.now() - t0) / 1000).toFixed(1)} s] ${phase}: ${proxies.length}/${PROXIES} proxies, ${workers.length}/${WORKERS} workers up; ` +
      `proxies know ${known.length === 0 ? 0 : Math.min(...known)}..${known.length === 0 ? 0 : Math.max(...known)} workers; event-loop lag p99 ${round(lag.percentile(99) / 1e6, 1)} ms`)
  }, 2_000)
  progress.unref()
  try {
    proxies.push(...await startMany(PROXIES, PARALLEL_STARTS, async i => {
      const proxy = await startNode(testConfig('proxy', join(root, `proxy-${i}`), boot, { maxConnections: 1_000 }), { logPrefix: `proxy-${i}`, metrics: false })
      const seen = new Map<string, bigint>()
      ;(proxy.role as ProxyRole).registry.addEventListener('worker:updated', (evt: CustomEvent<WorkerEntry>) => {
        const w = evt.detail
        if (w.state !== 'up' || seen.get(w.peerId) === w.seq) return
        const latency = w.lastSeenMs - w.announcedAtMs
        if (!seen.has(w.peerId)) first.push(latency)
        else if (measuringSteady) steady.push(latency)
        seen.set(w.peerId, w.seq)
      })
      return proxy
    }))
    await startMany(WORKERS, PARALLEL_STARTS, async i => {
      const w = await startNode(testConfig('worker', join(root, `worker-${i}`), boot, { maxConnections: 100, worker: { announceIntervalMs: INTERVAL_MS, accelerators: 'cpu' } }), { logPrefix: `worker-${i}`, metrics: false })
      workers.push(w)
      return w
    })
    const startedAllMs = performance.now() - t0
    phase = 'forming'
    await waitFor(() => proxies.every(p => (p.role as ProxyRole).registry.size === WORKERS), READY_TIMEOUT_MS, 'every proxy to know every worker', 50)
    const readyMs = performance.now() - t0
    const lagFormingP99Ms = lag.percentile(99) / 1e6
    lag.reset()
    phase = 'steady window'
    measuringSteady = true
    await new Promise(resolve => setTimeout(resolve, STEADY_WINDOW_MS))
    measuringSteady = false
    const lagSteadyP99Ms = lag.percentile(99) / 1e6
    await settle()
    const rssPerNodeMiB = mib(process.memoryUsage().rss - rssBefore) / (1 + PROXIES + WORKERS)
    const conns = (nodes: RunningNode[]): number => nodes.reduce((sum, n) => sum + new Set(n.node.getConnections().map(c => c.remotePeer.toString())).size, 0) / Math.max(1, nodes.length)
    const connectionsPerWorker = conns(workers)
    const connectionsPerProxy = conns(proxies)
    // baseline: plain gossip in the same swarm, from each worker to the proxies
    phase = 'presence baseline'
    const presence: number[] = []
    let presenceMissing = 0
    for (const w of workers) {
      const { arrivalsMs, missing } = await heartbeatArrivals(w, proxies, 5_000)
      presence.push(...arrivalsMs)
      presenceMissing += missing
    }
    return {
      first, steady, presence, presenceMissing, proxies, workers,
      readyMs, readyAfterLastStartMs: readyMs - startedAllMs, startedAllMs, rssPerNodeMiB, lagFormingP99Ms, lagSteadyP99Ms, connectionsPerWorker, connectionsPerProxy,
      stop: async () => {
        await Promise.all(workers.map(async w => { await w.stop() }))
        await Promise.all(proxies.map(async p => { await p.stop() }))
        await bootstrap.stop()
      }
    }
  } finally {
    clearInterval(progress)
    lag.disable()
  }
}

async function verificationTimes (): Promise<{ tdxColdMs: number, tdxCachedMs: number, simulatedMs: number, tdxStatus: string }> {
  const dir = join(packageRoot(), 'test', 'fixtures', 'tdx')
  const quote = new Uint8Array(readFileSync(join(dir, 'tdx_quote')))
  const collateral = JSON.parse(readFileSync(join(dir, 'tdx_quote_collateral.json'), 'utf8')) as Collateral
  const at = Date.parse('2025-07-01T00:00:00Z')
  const cold: number[] = []
  const cached: number[] = []
  let tdxStatus = ''
  for (let i = 0; i < VERIFY_ROUNDS; i++) {
    const verifier = new DcapVerifier({ collateral: async () => collateral })
    let t = performance.now()
    tdxStatus = (await verifier.verify(quote, at)).tcbStatus
    cold.push(performance.now() - t)
    t = performance.now()
    await verifier.verify(quote, at + 1_000)
    cached.push(performance.now() - t)
  }
  const simulated = new SimulatedProvider(simulatedMeasurements({ buildDigest: new Uint8Array(32), configDigest: new Uint8Array(32) }))
  const simQuote = await simulated.quote(new Uint8Array(64))
  const simVerifier = new SimulatedVerifier()
  const sim: number[] = []
  for (let i = 0; i < VERIFY_ROUNDS; i++) {
    const t = performance.now()
    await simVerifier.verify(simQuote)
    sim.push(performance.now() - t)
  }
  return { tdxColdMs: round(median(cold)), tdxCachedMs: round(median(cached), 3), simulatedMs: round(median(sim), 3), tdxStatus }
}

/** Feeds one proxy's validators pre-built messages from the swarm's workers (their attestations already cached). */
async function validationRate (proxy: RunningNode, workers: RunningNode[]): Promise<{ capacityPerSec: number, presencePerSec: number }> {
  const role = proxy.role as ProxyRole
  const base = BigInt(Date.now()) * 1000n + 10_000_000n
  const capacity: Message[] = []
  const presence: Message[] = []
  for (let i = 0; i < VALIDATE_MESSAGES; i++) {
    const w = workers[i % workers.length]
    const entry = role.registry.get(w.peerId.toString())
    if (entry == null) throw new Error('worker missing from the registry')
    const seq = base + BigInt(i)
    const data = CapacityAnnouncement.encode({
      peerId: w.peerId.toMultihash().bytes,
      network: 'local',
      models: entry.offers.map(o => ({
        name: o.model, weightsHash: new Uint8Array(0), contextLength: o.contextLength, pricePromptPerM: o.pricePromptPerM,
        priceCompletionPerM: o.priceCompletionPerM, maxConcurrent: o.maxConcurrent, freeSlots: o.freeSlots, synthetic: o.synthetic, description: o.description
      })),
      accelerators: [],
      attestationKind: EvidenceKind.SIMULATED,
      attestationDigest: new Uint8Array(w.tee?.digest ?? new Uint8Array(32)),
      timestampMs: BigInt(Date.now()),
      seq,
      intervalMs: INTERVAL_MS,
      addrs: []
    })
    capacity.push({ type: 'signed', from: w.peerId, topic: 'cocoon/1/capacity', data, sequenceNumber: seq, signature: new Uint8Array(64), key: w.peerId.publicKey! })
    const p = Presence.encode({ peerId: w.peerId.toMultihash().bytes, role: Role.WORKER, network: 'local', version: 'bench', addrs: [], timestampMs: BigInt(Date.now()), seq, intervalMs: 30_000 })
    presence.push({ type: 'signed', from: w.peerId, topic: PRESENCE_TOPIC, data: p, sequenceNumber: seq, signature: new Uint8Array(64), key: w.peerId.publicKey! })
  }
  // the pre-built sequence numbers are 10 s ahead of the workers' own, so those are ignored as old meanwhile
  await settle()
  let t = performance.now()
  let accepted = 0
  for (const m of capacity) if (await role.validator.validateGossip(m) === 'accept') accepted++
  const capacityPerSec = VALIDATE_MESSAGES / ((performance.now() - t) / 1000)
  if (accepted < VALIDATE_MESSAGES * 0.99) throw new Error(`only ${accepted} of ${VALIDATE_MESSAGES} capacity messages accepted`)
  t = performance.now()
  for (const m of presence) proxy.presence.validateAndRecord(m)
  const presencePerSec = VALIDATE_MESSAGES / ((performance.now() - t) / 1000)
  return { capacityPerSec: Math.round(capacityPerSec), presencePerSec: Math.round(presencePerSec) }
}

async function main (): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'cocoon-bench-capacity-'))
  try {
    const verify = await verificationTimes()
    const swarm = await swarmLatency(root)
    let rate
    try {
      rate = await validationRate(swarm.proxies[0], swarm.workers)
    } finally {
      await swarm.stop()
    }
    const result = {
      when: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      workers: WORKERS,
      proxies: PROXIES,
      ready_ms: Math.round(swarm.readyMs),
      steady_p50_ms: round(quantile(swarm.steady, 0.5)),
      steady_p99_ms: round(quantile(swarm.steady, 0.99)),
      first_p99_ms: round(quantile(swarm.first, 0.99)),
      rss_per_node_mib: round(swarm.rssPerNodeMiB),
      event_loop_lag_p99_ms: round(swarm.lagSteadyP99Ms),
      event_loop_lag_forming_p99_ms: round(swarm.lagFormingP99Ms),
      started_all_ms: Math.round(swarm.startedAllMs),
      ready_after_last_start_ms: Math.round(swarm.readyAfterLastStartMs),
      connections_per_worker: round(swarm.connectionsPerWorker, 1),
      connections_per_proxy: round(swarm.connectionsPerProxy, 1),
      announceIntervalMs: INTERVAL_MS,
      firstAnnouncementToRegistryMs: percentiles(swarm.first),
      steadyAnnouncementToRegistryMs: percentiles(swarm.steady),
      baselinePresenceDeliveryMs: { ...percentiles(swarm.presence), missing: swarm.presenceMissing },
      quoteVerificationMs: {
        tdxDcapCold: verify.tdxColdMs,
        tdxDcapCached: verify.tdxCachedMs,
        simulated: verify.simulatedMs,
        tdxStatusAt20250701: verify.tdxStatus,
        rounds: VERIFY_ROUNDS
      },
      validatedPerSecond: { capacity: rate.capacityPerSec, baselinePresence: rate.presencePerSec, messages: VALIDATE_MESSAGES }
    }
    console.log(`capacity benchmark: ${WORKERS} workers, ${PROXIES} proxies on loopback, one process (${process.version}, ${cpus().length} cpus)`)
    console.log(`  ready (every proxy knows every worker) after ${result.ready_ms} ms (all nodes started after ${result.started_all_ms} ms; ready ${result.ready_after_last_start_ms} ms later)`)
    console.log(`  connections per worker ${result.connections_per_worker}, per proxy ${result.connections_per_proxy}; RSS ${result.rss_per_node_mib} MiB per node; event-loop lag p99 ${result.event_loop_lag_p99_ms} ms steady, ${result.event_loop_lag_forming_p99_ms} ms forming`)
    console.log(`  announcement -> registry, first (with attestation)  p50 ${result.firstAnnouncementToRegistryMs.p50} ms, p99 ${result.firstAnnouncementToRegistryMs.p99} ms over ${result.firstAnnouncementToRegistryMs.samples}`)
    console.log(`  announcement -> registry, steady state              p50 ${result.steadyAnnouncementToRegistryMs.p50} ms, p99 ${result.steadyAnnouncementToRegistryMs.p99} ms over ${result.steadyAnnouncementToRegistryMs.samples}`)
    console.log(`    baseline: presence gossip delivery, same swarm    p50 ${result.baselinePresenceDeliveryMs.p50} ms, p99 ${result.baselinePresenceDeliveryMs.p99} ms over ${result.baselinePresenceDeliveryMs.samples}, ${swarm.presenceMissing} missing`)
    console.log(`  quote verification (median of ${VERIFY_ROUNDS})  TDX/DCAP cold ${verify.tdxColdMs} ms, cached ${verify.tdxCachedMs} ms; simulated ${verify.simulatedMs} ms`)
    console.log(`  validated per second by one proxy    capacity ${result.validatedPerSecond.capacity}/s   (baseline: presence ${result.validatedPerSecond.baselinePresence}/s)`)
    await writeResult('capacity', result)
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})

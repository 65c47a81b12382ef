/**
 * npm run bench:capacity — attested capacity on a loopback swarm in one
 * process: 20 workers and 3 proxies (plus a bootstrap node).
 *
 * Prints and writes bench/results/capacity.json:
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
import { PRESENCE_TOPIC } from '../src/p2p/constants.js'
import { CapacityAnnouncement, EvidenceKind } from '../src/p2p/protos/capacity.js'
import { Presence, Role } from '../src/p2p/protos/node.js'
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
const VERIFY_ROUNDS = 30
const VALIDATE_MESSAGES = 20_000

const percentiles = (v: number[]): { p50: number, p99: number, samples: number } => ({ p50: round(quantile(v, 0.5)), p99: round(quantile(v, 0.99)), samples: v.length })

async function swarmLatency (root: string): Promise<{
  first: number[], steady: number[], presence: number[], presenceMissing: number, proxies: RunningNode[], workers: RunningNode[], stop: () => Promise<void>
}> {
  const bootstrap = await startNode(testConfig('bootstrap', join(root, 'bootstrap')), { logPrefix: 'bootstrap', metrics: false })
  const boot = bootstrap.addrs()
  const proxies: RunningNode[] = []
  const first: number[] = []
  const steady: number[] = []
  let measuringSteady = false
  for (let i = 0; i < PROXIES; i++) {
    const proxy = await startNode(testConfig('proxy', join(root, `proxy-${i}`), boot), { logPrefix: `proxy-${i}`, metrics: false })
    const seen = new Map<string, bigint>()
    ;(proxy.role as ProxyRole).registry.addEventListener('worker:updated', (evt: CustomEvent<WorkerEntry>) => {
      const w = evt.detail
      if (w.state !== 'up' || seen.get(w.peerId) === w.seq) return
      const latency = w.lastSeenMs - w.announcedAtMs
      if (!seen.has(w.peerId)) first.push(latency)
      else if (measuringSteady) steady.push(latency)
      seen.set(w.peerId, w.seq)
    })
    proxies.push(proxy)
  }
  const workers: RunningNode[] = []
  for (let i = 0; i < WORKERS; i++) {
    workers.push(await startNode(testConfig('worker', join(root, `worker-${i}`), boot, { worker: { announceIntervalMs: INTERVAL_MS } }), { logPrefix: `worker-${i}`, metrics: false }))
  }
  await waitFor(() => proxies.every(p => (p.role as ProxyRole).registry.size === WORKERS), 60_000, 'every proxy to know every worker', 100)
  measuringSteady = true
  await new Promise(resolve => setTimeout(resolve, STEADY_WINDOW_MS))
  measuringSteady = false
  // baseline: plain gossip in the same swarm, from each worker to the proxies
  const presence: number[] = []
  let presenceMissing = 0
  for (const w of workers) {
    const { arrivalsMs, missing } = await heartbeatArrivals(w, proxies, 5_000)
    presence.push(...arrivalsMs)
    presenceMissing += missing
  }
  return {
    first, steady, presence, presenceMissing, proxies, workers,
    stop: async () => {
      await Promise.all(workers.map(async w => { await w.stop() }))
      await Promise.all(proxies.map(async p => { await p.stop() }))
      await bootstrap.stop()
    }
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
      intervalMs: INTERVAL_MS
    })
    capacity.push({ type: 'signed', from: w.peerId, topic: 'cocoon/1/capacity', data, sequenceNumber: seq, signature: new Uint8Array(64), key: w.peerId.publicKey! })
    const p = Presence.encode({ peerId: w.peerId.toMultihash().bytes, role: Role.WORKER, network: 'local', version: 'bench', addrs: [], timestampMs: BigInt(Date.now()), seq })
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

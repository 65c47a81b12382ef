/**
 * The simulator's coordinator: starts a devnet chain, forks host processes,
 * places the scenario's nodes on them (bootstrap first, then proxies, workers
 * and clients), waits for the swarm to form, drives the seeded schedule of
 * client requests and timed events, and measures everything from the nodes'
 * own state. It runs no node itself, so its timers stay on time.
 */
import { fork, spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defaults, validate } from '../src/config/load.js'
import { SCORE_THRESHOLDS } from '../src/p2p/gossip.js'
import { packageRoot } from '../src/package-info.js'
import { SeededRandom } from './random.js'
import { summarise } from './measure.js'
import type { AdversaryKind, HostProgress, HostReply, HostRequest, HostStats, JobOutcome, NodeSpec, StartedNode } from './protocol.js'
import type { SimEvent, SimResult } from './report/types.js'
import type { Scenario } from './scenario.js'
import type { ChildProcess } from 'node:child_process'

/** After the load stops: in-flight jobs finish, the last payments land. */
const DRAIN_TIMEOUT_MS = 60_000
const SETTLE_MS = 3_000
const PROGRESS_MS = 2_000
/**
 * The gossip delivery probe: one presence heartbeat from a random node this
 * often (a worker's goes out through gossipsub's fanout). Every node that
 * takes presence receives and checks each one, so a probe a second was most
 * of the presence traffic the runs measured.
 */
const PROBE_EVERY_MS = 5_000
/** Nodes one host starts at once. */
const PARALLEL_STARTS = 6

export interface RunOptions {
  /** Overrides the scenario's seed. */
  seed?: number
  /** Where progress lines go. */
  progress?: (line: string) => void
}

class Host {
  private readonly child: ChildProcess
  private nextId = 1
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void, reject: (e: Error) => void }>()
  readonly ready: Promise<void>
  exited = false
  /** Nodes started so far, with how long each start took. */
  readonly started: Array<HostProgress['progress']> = []

  constructor (readonly index: number, root: string) {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'host.js')
    this.child = fork(script, [], {
      env: { ...process.env, COCOON_SIM_HOST: String(index), COCOON_SIM_ROOT: join(root, `host-${index}`) },
      execArgv: ['--expose-gc', ...profileArgs(index)],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    this.ready = new Promise((resolve, reject) => {
      this.waiting.set(0, { resolve: () => { resolve() }, reject })
    })
    this.child.on('message', (reply: HostReply | HostProgress) => {
      if ('progress' in reply) {
        this.started.push(reply.progress)
        return
      }
      const w = this.waiting.get(reply.re)
      if (w == null) return
      this.waiting.delete(reply.re)
      if (reply.ok) w.resolve(reply.value)
      else w.reject(new Error(`host ${index}: ${reply.error}`))
    })
    this.child.on('exit', code => {
      this.exited = true
      for (const w of this.waiting.values()) w.reject(new Error(`host ${index} exited (code ${code ?? 'signal'})`))
      this.waiting.clear()
    })
  }

  async call<T> (req: HostCall): Promise<T> {
    if (this.exited) throw new Error(`host ${this.index} has exited`)
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: v => { resolve(v as T) }, reject })
      this.child.send({ ...req, id } as HostRequest)
    })
  }

  async shutdown (): Promise<void> {
    if (this.exited) return
    const exited = new Promise(resolve => { this.child.once('exit', resolve) })
    await Promise.race([
      this.call({ op: 'shutdown' }).then(async () => { await exited }, () => {}),
      new Promise(resolve => setTimeout(resolve, 15_000))
    ])
    if (!this.exited) this.child.kill('SIGKILL')
  }
}

/**
 * COCOON_SIM_CPU_PROF=<dir>: a CPU profile of each host, written when it
 * exits (NODE_OPTIONS cannot carry --cpu-prof); COCOON_SIM_CPU_PROF_HOSTS=1,3
 * limits it to those hosts, since profiling costs CPU.
 */
function profileArgs (index: number): string[] {
  const dir = process.env.COCOON_SIM_CPU_PROF
  if (dir == null || dir === '') return []
  const only = (process.env.COCOON_SIM_CPU_PROF_HOSTS ?? '').split(',').filter(Boolean).map(Number)
  return only.length > 0 && !only.includes(index) ? [] : ['--cpu-prof', `--cpu-prof-dir=${dir}`]
}

interface Placed extends StartedNode { host: Host }

/** A request without its id (the host connection numbers them). */
type HostCall = HostRequest extends infer R ? R extends HostRequest ? Omit<R, 'id'> : never : never

/** A dishonest peer the scenario started, and how the swarm treated it. */
export interface RogueRecord {
  kind: AdversaryKind
  name: string
  peer: string
  /** ms from the load's start. */
  startedAtMs: number
  /** When every proxy's gossip score for it first fell below the graylist threshold (forged_attestation, capacity_spam). */
  shunnedAtMs: number | null
  /** Still in some proxy's registry at the end. */
  listedAtEnd: boolean
}

export interface JobRecord extends JobOutcome {
  /** ms from the load's start when the request was sent. */
  atMs: number
  client: string
}

export async function runSimulation (scenario: Scenario, options: RunOptions = {}): Promise<SimResult> {
  const seed = options.seed ?? scenario.seed
  const say = options.progress ?? ((line: string) => { process.stderr.write(line + '\n') })
  const random = new SeededRandom(seed)
  if (scenario.events.some(e => e.kind === 'partition') && scenario.processes < 2) {
    throw new Error('a partition splits the host processes in two: the scenario needs processes >= 2')
  }
  const root = await mkdtemp(join(tmpdir(), `cocoon-sim-${scenario.name}-`))
  const t0 = performance.now()
  const elapsed = (): string => `${((performance.now() - t0) / 1000).toFixed(1)} s`
  const chain = scenario.settlement ? await startChain(join(root, 'chain')) : undefined
  const hosts = Array.from({ length: scenario.processes }, (_, i) => new Host(i, root))
  const placed = new Map<string, Placed>()
  const events: SimEvent[] = []
  const jobs: JobRecord[] = []
  const statsSeries: Array<{ atMs: number, stats: HostStats[] }> = []
  const rogues: Array<RogueRecord & { host: Host }> = []
  let loadStart = 0
  let warmup: { ms: number, ok: number, failed: number } | undefined
  let workerCount = 0
  let nextHost = 0
  try {
    await Promise.all(hosts.map(async h => { await h.ready }))
    const { worker: w } = scenario
    const chunkIntervalMs = Math.max(0, Math.round(1000 / w.tokensPerSecond))
    const overrides = (role: NodeSpec['role']): Record<string, unknown> => ({
      maxConnections: role === 'bootstrap' ? 2_000 : role === 'proxy' ? 1_000 : 100,
      ...(chain != null && role !== 'bootstrap' ? { settlement: { enabled: true, chain: 'devnet', endpoint: chain.url, required: true, minDisputeWindowS: 60, disputeWindowS: 60, ...(scenario.creditWindowNanoton == null ? {} : { creditWindow: scenario.creditWindowNanoton }) } } : {}),
      ...(role === 'worker'
        ? {
            worker: {
              backend: 'synthetic',
              // the synthetic backend runs on the CPU; saying so skips an nvidia-smi per worker
              accelerators: 'cpu',
              announceIntervalMs: w.announceIntervalMs,
              models: w.models.map(name => ({ name, contextLength: 8192, maxConcurrent: w.slots, pricePromptPerM: w.pricePromptPerM, priceCompletionPerM: w.priceCompletionPerM })),
              synthetic: { chunks: scenario.load.answerTokens[1], chunkBytes: 8, intervalMs: chunkIntervalMs, firstChunkDelayMs: w.firstTokenMs }
            }
          }
        : {})
    })
    const nextHostIndex = (): number => roundRobinHost(nextHost++, hosts.length, scenario.dedicatedBootstrapHost)
    const place = async (role: NodeSpec['role'], names: string[], bootstrap: string[], onHost?: (i: number) => number): Promise<Placed[]> => {
      const byHost = new Map<number, NodeSpec[]>()
      for (const name of names) {
        const h = onHost?.(placed.size) ?? nextHostIndex()
        byHost.set(h, [...(byHost.get(h) ?? []), { name, role, bootstrap, overrides: overrides(role) }])
      }
      const started = await Promise.all([...byHost].map(async ([h, specs]) => {
        const nodes = await hosts[h].call<StartedNode[]>({ op: 'start', specs, parallel: PARALLEL_STARTS })
        return nodes.map(n => ({ ...n, host: hosts[h] }))
      }))
      const flat = started.flat()
      for (const n of flat) placed.set(n.name, n)
      return flat
    }
    /** Places nodes at the scenario's start rate (see startSchedule), each batch not waiting for the ones before. */
    const paced = async (role: NodeSpec['role'], names: string[]): Promise<void> => {
      if (scenario.startPerSecond <= 0) {
        await place(role, names, bootAddrs)
        return
      }
      const batches: Array<Promise<Placed[]>> = []
      const began = performance.now()
      for (const { atMs, from, to } of startSchedule(names.length, scenario.startPerSecond)) {
        const wait = began + atMs - performance.now()
        if (wait > 0) await sleep(wait)
        batches.push(place(role, names.slice(from, to), bootAddrs))
      }
      await Promise.all(batches)
    }
    const range = (prefix: string, from: number, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}-${from + i}`)

    say(`sim ${scenario.name}: seed ${seed}, ${scenario.nodes.bootstrap + scenario.nodes.proxy + scenario.nodes.worker + scenario.nodes.client} nodes on ${hosts.length} host processes${chain != null ? `, devnet chain at ${chain.url}` : ''}`)
    const boots = await place('bootstrap', range('bootstrap', 0, scenario.nodes.bootstrap), [], () => 0)
    const bootAddrs = boots.flatMap(b => b.addrs.slice(0, 1))
    say(`  [${elapsed()}] ${boots.length} bootstrap node(s) up`)
    let reported = 0
    const formProgress = setInterval(() => {
      const all = hosts.flatMap(h => h.started)
      const recent = all.slice(reported).map(s => s.startMs).sort((a, b) => a - b)
      reported = all.length
      const byRole = new Map<string, number>()
      for (const s of all) byRole.set(s.role, (byRole.get(s.role) ?? 0) + 1)
      say(`  [${elapsed()}] starting: ${[...byRole].map(([role, n]) => `${n} ${role}`).join(', ')} up` +
        (recent.length === 0 ? '' : `; the last ${recent.length} took ${(recent[Math.floor(recent.length / 2)] / 1000).toFixed(1)} s each (median)`))
    }, PROGRESS_MS)
    try {
      await place('proxy', range('proxy', 0, scenario.nodes.proxy), bootAddrs)
      await paced('worker', range('worker', 0, scenario.nodes.worker))
      workerCount = scenario.nodes.worker
      await paced('client', range('client', 0, scenario.nodes.client))
    } finally {
      clearInterval(formProgress)
    }
    say(`  [${elapsed()}] ${placed.size} nodes started; waiting for every proxy to know every worker`)
    let formFailure: string | undefined
    const formDeadline = performance.now() + scenario.formTimeoutMs
    for (;;) {
      const stats = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: false })))
      const proxies = stats.flatMap(s => s.nodes.filter(n => n.role === 'proxy'))
      const clients = stats.flatMap(s => s.nodes.filter(n => n.role === 'client'))
      const minKnown = Math.min(...proxies.map(p => p.known))
      const clientsReady = clients.filter(c => c.known > 0).length >= Math.ceil(scenario.formFraction * clients.length)
      if (minKnown >= Math.ceil(scenario.formFraction * scenario.nodes.worker) && clientsReady) break
      if (performance.now() > formDeadline) {
        // measured anyway (what a node costs at this size is the point of a large run); the report says it did not form
        formFailure = `the swarm did not form within ${scenario.formTimeoutMs / 1000} s: proxies know ${minKnown}..${Math.max(...proxies.map(p => p.known))} of ${scenario.nodes.worker} workers, ${clients.filter(c => c.known > 0).length} of ${clients.length} clients know a proxy`
        say(`  [${elapsed()}] ${formFailure}; sending the load anyway`)
        break
      }
      say(`  [${elapsed()}] forming: proxies know ${minKnown}..${Math.max(...proxies.map(p => p.known))} of ${scenario.nodes.worker} workers; ${clients.filter(c => c.known > 0).length}/${clients.length} clients know a proxy; ${hostLoad(stats)}`)
      await sleep(1_000)
    }
    const formedMs = performance.now() - t0
    if (formFailure == null) say(`  [${elapsed()}] swarm formed; sending load for ${scenario.durationMs / 1000} s`)
    await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: false })))

    // the schedule: every arrival and event, drawn from the seed before anything runs
    const arrivals: Array<{ atMs: number, client: string, promptTokens: number, maxTokens: number, model: string }> = []
    for (const client of range('client', 0, scenario.nodes.client)) {
      if (scenario.load.ratePerClient <= 0) break
      for (let t = random.gapMs(scenario.load.ratePerClient); t < scenario.durationMs; t += random.gapMs(scenario.load.ratePerClient)) {
        arrivals.push({ atMs: t, client, promptTokens: random.int(...scenario.load.promptTokens), maxTokens: random.int(...scenario.load.answerTokens), model: random.pick(w.models) })
      }
    }
    arrivals.sort((a, b) => a.atMs - b.atMs)
    const timed = expandEvents(scenario, random)
    const adversaries = scenario.adversaries.flatMap(a => Array.from({ length: a.count }, () => a)).sort((a, b) => a.atMs - b.atMs)
    let nextAdversary = 0
    const startAdversary = async (a: Scenario['adversaries'][number]): Promise<void> => {
      const atMs = Math.round(sinceLoad())
      if (a.kind === 'stops_paying') {
        const honest = [...placed.values()].filter(n => n.role === 'client' && !rogues.some(r => r.name === n.name))
        if (honest.length === 0) throw new Error('no client left to turn dishonest')
        const client = honest[honest.length - 1]
        await client.host.call({ op: 'adversary', kind: a.kind, name: client.name, dial: [], model: w.models[0], ratePerSec: 0 })
        rogues.push({ kind: a.kind, name: client.name, peer: client.peerId, startedAtMs: atMs, shunnedAtMs: null, listedAtEnd: false, host: client.host })
        events.push({ t_ms: atMs, kind: 'adversary', detail: `${client.name} stops paying` })
        return
      }
      const host = random.pick(hosts)
      const dial = [...bootAddrs, ...[...placed.values()].filter(n => n.role === 'proxy').map(p => p.addrs[0])]
      const name = `rogue-${rogues.length}`
      const peer = await host.call<string>({ op: 'adversary', kind: a.kind, name, dial, model: w.models[0], ratePerSec: a.ratePerSec })
      rogues.push({ kind: a.kind, name, peer, startedAtMs: atMs, shunnedAtMs: null, listedAtEnd: false, host })
      events.push({ t_ms: atMs, kind: 'adversary', detail: `${name} (${a.kind}${a.kind === 'capacity_spam' ? `, ${a.ratePerSec}/s` : ''}) started` })
    }
    /** Every proxy's view of the gossip-level adversaries: shunned once all of them graylist it. */
    const watchRogues = async (now: number): Promise<void> => {
      for (const r of rogues) {
        if (r.kind === 'stops_paying') continue
        const views = (await Promise.all(hosts.map(async h => h.call<Array<{ score: number, listed: boolean }>>({ op: 'scores', peerId: r.peer })))).flat()
        r.listedAtEnd = views.some(v => v.listed)
        if (r.shunnedAtMs == null && views.length > 0 && views.every(v => v.score < SCORE_THRESHOLDS.graylistThreshold)) r.shunnedAtMs = now
      }
    }

    if (scenario.load.warmupPerClient > 0) {
      const warmupStart = performance.now()
      const clients = [...placed.values()].filter(n => n.role === 'client')
      const outcomes = (await Promise.all(clients.map(async c => {
        const out: JobOutcome[] = []
        for (let i = 0; i < scenario.load.warmupPerClient; i++) {
          out.push(await c.host.call<JobOutcome>({ op: 'job', job: { client: c.name, model: w.models[i % w.models.length], promptTokens: 16, maxTokens: 8, timeoutMs: scenario.load.timeoutMs } }))
        }
        return out
      }))).flat()
      warmup = { ms: Math.round(performance.now() - warmupStart), ok: outcomes.filter(o => o.ok).length, failed: outcomes.filter(o => !o.ok).length }
      say(`  [${elapsed()}] warm-up: ${warmup.ok} of ${outcomes.length} requests answered in ${(warmup.ms / 1000).toFixed(1)} s (payment channels open)`)
    }

    loadStart = performance.now()
    const sinceLoad = (): number => performance.now() - loadStart
    const inFlight = new Set<Promise<void>>()
    const runJob = (a: typeof arrivals[number]): void => {
      const c = placed.get(a.client)
      if (c == null) return
      const p = c.host.call<JobOutcome>({ op: 'job', job: { client: a.client, model: a.model, promptTokens: a.promptTokens, maxTokens: a.maxTokens, timeoutMs: scenario.load.timeoutMs } })
        .then(outcome => { jobs.push({ ...outcome, atMs: a.atMs, client: a.client }) })
        .catch(err => { jobs.push({ ok: false, ttftMs: null, latencyMs: 0, completionTokens: 0, chunks: 0, costNanoton: null, error: (err as Error).message, atMs: a.atMs, client: a.client }) })
        .finally(() => { inFlight.delete(p) })
      inFlight.add(p)
    }
    const runEvent = async (e: typeof timed[number]): Promise<void> => {
      const workers = [...placed.values()].filter(n => n.role === 'worker')
      const proxies = [...placed.values()].filter(n => n.role === 'proxy')
      if (e.kind === 'worker_join') {
        const names = range('worker', workerCount, e.count)
        workerCount += e.count
        await place('worker', names, bootAddrs)
        events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: `${names.join(', ')} joined` })
      } else if (e.kind === 'worker_leave' || e.kind === 'worker_crash' || e.kind === 'proxy_crash') {
        const pool = e.kind === 'proxy_crash' ? proxies.slice(1) : workers
        const victims: Placed[] = []
        for (let i = 0; i < e.count && pool.length > 0; i++) victims.push(pool.splice(Math.floor(random.next() * pool.length), 1)[0])
        await Promise.all(victims.map(async v => {
          placed.delete(v.name)
          await v.host.call({ op: 'stop', name: v.name, crash: e.kind !== 'worker_leave' })
        }))
        events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: victims.length === 0 ? 'nobody left to stop' : `${victims.map(v => v.name).join(', ')} ${e.kind === 'worker_leave' ? 'left' : 'crashed'}` })
      } else if (e.kind === 'partition') {
        // the first half of the host processes against the second
        const half = Math.ceil(hosts.length / 2)
        const side = (n: Placed): number => n.host.index < half ? 0 : 1
        const all = [...placed.values()]
        await Promise.all(hosts.map(async h => {
          const mine = h.index < half ? 0 : 1
          await h.call({ op: 'block', peers: all.filter(n => side(n) !== mine).map(n => n.peerId) })
        }))
        events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: `hosts 0-${half - 1} cut off from hosts ${half}-${hosts.length - 1}` })
      } else if (e.kind === 'heal') {
        await Promise.all(hosts.map(async h => { await h.call({ op: 'unblock' }) }))
        events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: 'partition healed' })
      } else if (e.kind === 'slow_worker') {
        const victims: Placed[] = []
        for (let i = 0; i < e.count && workers.length > 0; i++) victims.push(workers.splice(Math.floor(random.next() * workers.length), 1)[0])
        await Promise.all(victims.map(async v => { await v.host.call({ op: 'slowDown', name: v.name, factor: e.factor }) }))
        events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: `${victims.map(v => v.name).join(', ')} ${e.factor}x slower` })
      }
    }

    let nextArrival = 0
    let nextEvent = 0
    let lastProgress = 0
    let lastStats = 0
    let lastProbe = -PROBE_EVERY_MS
    const gossipProbes: Array<{ peerId: string, seq: string, sentAtMs: number }> = []
    // events run one after another, beside the load (a join takes seconds; requests keep coming)
    let eventChain = Promise.resolve()
    const joins = new Set<Promise<void>>()
    let sampling = false
    while (sinceLoad() < scenario.durationMs) {
      const now = sinceLoad()
      while (nextArrival < arrivals.length && arrivals[nextArrival].atMs <= now) runJob(arrivals[nextArrival++])
      while (nextAdversary < adversaries.length && adversaries[nextAdversary].atMs <= now) {
        const a = adversaries[nextAdversary++]
        eventChain = eventChain.then(async () => { await startAdversary(a) }).catch(err => {
          events.push({ t_ms: Math.round(sinceLoad()), kind: 'adversary', detail: `failed to start ${a.kind}: ${(err as Error).message}` })
        })
      }
      while (nextEvent < timed.length && timed[nextEvent].atMs <= now) {
        const e = timed[nextEvent++]
        const run = async (): Promise<void> => {
          await runEvent(e).catch(err => {
            events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: `failed: ${(err as Error).message}` })
          })
        }
        // a join takes seconds and touches nobody else: it runs beside the others, which keep their order
        if (e.kind === 'worker_join') {
          const joining = run().finally(() => { joins.delete(joining) })
          joins.add(joining)
        } else {
          eventChain = eventChain.then(run)
        }
      }
      if (now - lastStats >= 1_000 && !sampling) {
        lastStats = now
        sampling = true
        // host stats, and a gossip probe from a random live node (checked once the run is over)
        const sender = now - lastProbe >= PROBE_EVERY_MS ? random.pick([...placed.values()]) : undefined
        if (sender != null) lastProbe = now
        void (async () => {
          const stats = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: false })))
          statsSeries.push({ atMs: now, stats })
          await watchRogues(now)
          if (sender == null) return
          const seq = await sender.host.call<string>({ op: 'probe', name: sender.name }).catch(() => null)
          if (seq != null && placed.has(sender.name)) gossipProbes.push({ peerId: sender.peerId, seq, sentAtMs: Date.now() })
        })().catch(() => {}).finally(() => { sampling = false })
      }
      if (now - lastProgress >= PROGRESS_MS) {
        lastProgress = now
        const done = jobs.length
        const ok = jobs.filter(j => j.ok).length
        const latest = statsSeries.at(-1)?.stats
        say(`  [${elapsed()}] load ${(now / 1000).toFixed(0)}/${scenario.durationMs / 1000} s: ${done} done (${ok} ok), ${inFlight.size} in flight, ${placed.size} nodes${latest == null ? '' : `; ${hostLoad(latest)}`}`)
      }
      await sleep(Math.min(50, Math.max(1, (arrivals[nextArrival]?.atMs ?? Infinity) - sinceLoad())))
    }
    say(`  [${elapsed()}] load over; waiting for ${inFlight.size} requests in flight`)
    await Promise.race([Promise.allSettled([...inFlight, eventChain, ...joins]), sleep(DRAIN_TIMEOUT_MS)])
    while (sampling) await sleep(50)
    await sleep(SETTLE_MS)

    // gossip delivery: each probe should have reached every node alive now
    let seen = 0
    let expected = 0
    for (const probe of gossipProbes) {
      const counts = await Promise.all(hosts.map(async h => h.call<{ seen: number, total: number }>({ op: 'probeSeen', peerId: probe.peerId, seq: probe.seq, sentAtMs: probe.sentAtMs })))
      for (const c of counts) { seen += c.seen; expected += c.total }
    }
    // DHT lookups from each client for the first model
    const dhtMs: number[] = []
    for (const c of [...placed.values()].filter(n => n.role === 'client')) {
      const ms = await c.host.call<number | null>({ op: 'dhtLookup', name: c.name, model: w.models[0], timeoutMs: 10_000 }).catch(() => null)
      if (ms != null) dhtMs.push(ms)
    }
    await watchRogues(sinceLoad())
    const final = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: true })))
    say(`  [${elapsed()}] measured; stopping nodes`)
    return summarise({
      scenario, seed, formedMs, formFailure, durationMs: performance.now() - t0, hosts: hosts.length, nodesStarted: scenario.nodes.bootstrap + scenario.nodes.proxy + workerCount + scenario.nodes.client,
      jobs, events, statsSeries, final, gossip: { seen, expected }, dhtMs,
      rogues: rogues.map(({ host: _host, ...r }) => r),
      warmup,
      creditWindow: BigInt(scenario.creditWindowNanoton ?? validate(defaults('local', 'proxy', {})).settlement.creditWindow),
      commissionBp: validate(defaults('local', 'proxy', {})).settlement.commissionBp
    })
  } finally {
    await Promise.all(hosts.map(async h => { await h.shutdown() }))
    await chain?.close()
    await rm(root, { recursive: true, force: true }).catch(() => {})
  }
}

/**
 * The devnet chain in a process of its own (`cocoon chain`): the TON
 * emulator is busy with every faucet and channel transaction, and must not
 * delay the coordinator's schedule.
 */
async function startChain (dataDir: string): Promise<{ url: string, close: () => Promise<void> }> {
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'cocoon.js'), 'chain', '--port', '0', '--data-dir', dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`cocoon chain did not serve within 30 s: ${output}`)) }, 30_000)
    const onData = (d: Buffer): void => {
      output += d.toString()
      const m = /served on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (m != null) { clearTimeout(timer); resolve(m[1]) }
    }
    child.stdout.on('data', onData)
    child.stderr.on('data', onData)
    child.on('exit', code => { clearTimeout(timer); reject(new Error(`cocoon chain exited (${code ?? 'signal'}): ${output}`)) })
  })
  return {
    url,
    close: async () => {
      if (child.exitCode != null) return
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await Promise.race([exited, sleep(10_000)])
      if (child.exitCode == null) child.kill('SIGKILL')
    }
  }
}

/**
 * The host of the `n`th node placed round-robin: over all hosts, or over all
 * but host 0 when the bootstrap nodes have it to themselves.
 */
export function roundRobinHost (n: number, hosts: number, dedicatedBootstrapHost: boolean): number {
  const skip = dedicatedBootstrapHost && hosts > 1 ? 1 : 0
  return skip + (n % (hosts - skip))
}

/** When to start which of `count` nodes at `perSecond`: a batch every 250 ms or so (ms from the first). */
export function startSchedule (count: number, perSecond: number): Array<{ atMs: number, from: number, to: number }> {
  const perBatch = Math.max(1, Math.round(perSecond / 4))
  const gapMs = 1_000 * perBatch / perSecond
  const out: Array<{ atMs: number, from: number, to: number }> = []
  for (let from = 0; from < count; from += perBatch) out.push({ atMs: gapMs * (from / perBatch), from, to: Math.min(count, from + perBatch) })
  return out
}

/** Since the hosts' last stats: their CPU (all of them and the busiest), lag, longest GC pause, connection churn, and nodes left with no connection. */
function hostLoad (stats: HostStats[]): string {
  const max = (f: (s: HostStats) => number): number => Math.max(...stats.map(f))
  const sum = (f: (s: HostStats) => number): number => stats.reduce((total, s) => total + f(s), 0)
  const seconds = Math.max(1, max(s => s.windowMs)) / 1000
  const alone = stats.flatMap(s => s.nodes).filter(n => n.role !== 'bootstrap' && n.connections === 0).length
  return `hosts: CPU ${(sum(s => s.cpuFraction) * 100).toFixed(0)} % in all, up to ${max(s => s.cpuFraction * 100).toFixed(0)} %, lag p99 up to ${max(s => s.lagP99Ms).toFixed(0)} ms, GC pause up to ${max(s => s.gcMaxPauseMs).toFixed(0)} ms; ` +
    `connections ${(sum(s => s.connectionsOpened) / seconds).toFixed(0)}/s opened, ${(sum(s => s.connectionsClosed) / seconds).toFixed(0)}/s closed${alone > 0 ? `; ${alone} nodes with none` : ''}`
}

/** The scenario's timed events plus churn drawn from the seed, in time order. */
function expandEvents (scenario: Scenario, random: SeededRandom): Array<{ atMs: number, kind: Scenario['events'][number]['kind'], count: number, factor: number }> {
  const out = scenario.events.map(e => ({ atMs: e.atMs, kind: e.kind, count: e.count, factor: e.factor }))
  const churn: Array<[number, 'worker_leave' | 'worker_crash' | 'worker_join']> = [
    [scenario.churn.leavePerMin, 'worker_leave'], [scenario.churn.crashPerMin, 'worker_crash'], [scenario.churn.joinPerMin, 'worker_join']
  ]
  for (const [perMin, kind] of churn) {
    if (perMin <= 0) continue
    for (let t = random.gapMs(perMin / 60); t < scenario.durationMs; t += random.gapMs(perMin / 60)) out.push({ atMs: Math.round(t), kind, count: 1, factor: 1 })
  }
  return out.sort((a, b) => a.atMs - b.atMs)
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * The simulator's coordinator: starts a devnet chain, forks host processes,
 * places the scenario's nodes on them (bootstrap first, then proxies, workers
 * and clients), waits for the swarm to form, drives the seeded schedule of
 * client requests and timed events, and measures everything from the nodes'
 * own state. It runs no node itself, so its timers stay on time.
 */
import { fork } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { serveDevnet } from '../src/settlement/chain/index.js'
import { SeededRandom } from './random.js'
import { summarise } from './measure.js'
import type { HostReply, HostRequest, HostStats, JobOutcome, NodeSpec, StartedNode } from './protocol.js'
import type { SimEvent, SimResult } from './report/types.js'
import type { Scenario } from './scenario.js'
import type { ChildProcess } from 'node:child_process'

/** How long the swarm may take to form before the run fails. */
const FORM_TIMEOUT_MS = 300_000
/** After the load stops: in-flight jobs finish, the last payments land. */
const DRAIN_TIMEOUT_MS = 60_000
const SETTLE_MS = 3_000
const PROGRESS_MS = 2_000
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

  constructor (readonly index: number, root: string) {
    const script = join(dirname(fileURLToPath(import.meta.url)), 'host.js')
    this.child = fork(script, [], {
      env: { ...process.env, COCOON_SIM_HOST: String(index), COCOON_SIM_ROOT: join(root, `host-${index}`) },
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc']
    })
    this.ready = new Promise((resolve, reject) => {
      this.waiting.set(0, { resolve: () => { resolve() }, reject })
    })
    this.child.on('message', (reply: HostReply) => {
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
    await Promise.race([
      this.call({ op: 'shutdown' }).catch(() => {}),
      new Promise(resolve => setTimeout(resolve, 15_000))
    ])
    if (!this.exited) this.child.kill('SIGKILL')
  }
}

interface Placed extends StartedNode { host: Host }

/** A request without its id (the host connection numbers them). */
type HostCall = HostRequest extends infer R ? R extends HostRequest ? Omit<R, 'id'> : never : never

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
  const chain = scenario.settlement ? await serveDevnet({ dataDir: join(root, 'chain') }) : undefined
  const hosts = Array.from({ length: scenario.processes }, (_, i) => new Host(i, root))
  const placed = new Map<string, Placed>()
  const events: SimEvent[] = []
  const jobs: JobRecord[] = []
  const statsSeries: Array<{ atMs: number, stats: HostStats[] }> = []
  let loadStart = 0
  let workerCount = 0
  let nextHost = 0
  try {
    await Promise.all(hosts.map(async h => { await h.ready }))
    const { worker: w } = scenario
    const chunkIntervalMs = Math.max(0, Math.round(1000 / w.tokensPerSecond))
    const overrides = (role: NodeSpec['role']): Record<string, unknown> => ({
      maxConnections: role === 'bootstrap' ? 2_000 : role === 'proxy' ? 1_000 : 100,
      ...(chain != null && role !== 'bootstrap' ? { settlement: { enabled: true, chain: 'devnet', endpoint: chain.url, required: true, minDisputeWindowS: 60, disputeWindowS: 60 } } : {}),
      ...(role === 'worker'
        ? {
            worker: {
              backend: 'synthetic',
              announceIntervalMs: w.announceIntervalMs,
              models: w.models.map(name => ({ name, contextLength: 8192, maxConcurrent: w.slots, pricePromptPerM: w.pricePromptPerM, priceCompletionPerM: w.priceCompletionPerM })),
              synthetic: { chunks: scenario.load.answerTokens[1], chunkBytes: 8, intervalMs: chunkIntervalMs, firstChunkDelayMs: w.firstTokenMs }
            }
          }
        : {})
    })
    const place = async (role: NodeSpec['role'], names: string[], bootstrap: string[], onHost?: (i: number) => number): Promise<Placed[]> => {
      const byHost = new Map<number, NodeSpec[]>()
      for (const name of names) {
        const h = onHost?.(placed.size) ?? (nextHost++ % hosts.length)
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
    const range = (prefix: string, from: number, count: number): string[] => Array.from({ length: count }, (_, i) => `${prefix}-${from + i}`)

    say(`sim ${scenario.name}: seed ${seed}, ${scenario.nodes.bootstrap + scenario.nodes.proxy + scenario.nodes.worker + scenario.nodes.client} nodes on ${hosts.length} host processes${chain != null ? `, devnet chain at ${chain.url}` : ''}`)
    const boots = await place('bootstrap', range('bootstrap', 0, scenario.nodes.bootstrap), [], () => 0)
    const bootAddrs = boots.flatMap(b => b.addrs.slice(0, 1))
    say(`  [${elapsed()}] ${boots.length} bootstrap node(s) up`)
    const formProgress = setInterval(() => { say(`  [${elapsed()}] starting: ${placed.size} nodes up`) }, PROGRESS_MS)
    try {
      await place('proxy', range('proxy', 0, scenario.nodes.proxy), bootAddrs)
      await place('worker', range('worker', 0, scenario.nodes.worker), bootAddrs)
      workerCount = scenario.nodes.worker
      await place('client', range('client', 0, scenario.nodes.client), bootAddrs)
    } finally {
      clearInterval(formProgress)
    }
    say(`  [${elapsed()}] ${placed.size} nodes started; waiting for every proxy to know every worker`)
    const formDeadline = performance.now() + FORM_TIMEOUT_MS
    for (;;) {
      const stats = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: false })))
      const proxies = stats.flatMap(s => s.nodes.filter(n => n.role === 'proxy'))
      const clients = stats.flatMap(s => s.nodes.filter(n => n.role === 'client'))
      const minKnown = Math.min(...proxies.map(p => p.known))
      const clientsReady = clients.every(c => c.known > 0)
      if (minKnown >= scenario.nodes.worker && clientsReady) break
      if (performance.now() > formDeadline) throw new Error(`the swarm did not form within ${FORM_TIMEOUT_MS / 1000} s: proxies know ${minKnown} of ${scenario.nodes.worker} workers`)
      say(`  [${elapsed()}] forming: proxies know ${minKnown}..${Math.max(...proxies.map(p => p.known))} of ${scenario.nodes.worker} workers; ${clients.filter(c => c.known > 0).length}/${clients.length} clients know a proxy`)
      await sleep(1_000)
    }
    const formedMs = performance.now() - t0
    say(`  [${elapsed()}] swarm formed; sending load for ${scenario.durationMs / 1000} s`)
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

    loadStart = performance.now()
    const sinceLoad = (): number => performance.now() - loadStart
    const inFlight = new Set<Promise<void>>()
    const runJob = (a: typeof arrivals[number]): void => {
      const c = placed.get(a.client)
      if (c == null) return
      const p = c.host.call<JobOutcome>({ op: 'job', job: { client: a.client, model: a.model, promptTokens: a.promptTokens, maxTokens: a.maxTokens, timeoutMs: scenario.load.timeoutMs } })
        .then(outcome => { jobs.push({ ...outcome, atMs: a.atMs, client: a.client }) })
        .catch(err => { jobs.push({ ok: false, ttftMs: null, latencyMs: 0, completionTokens: 0, costNanoton: null, error: (err as Error).message, atMs: a.atMs, client: a.client }) })
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
    const gossipProbes: Array<{ peerId: string, seq: string, sentAtMs: number }> = []
    // events run one after another, beside the load (a join takes seconds; requests keep coming)
    let eventChain = Promise.resolve()
    let sampling = false
    while (sinceLoad() < scenario.durationMs) {
      const now = sinceLoad()
      while (nextArrival < arrivals.length && arrivals[nextArrival].atMs <= now) runJob(arrivals[nextArrival++])
      while (nextEvent < timed.length && timed[nextEvent].atMs <= now) {
        const e = timed[nextEvent++]
        eventChain = eventChain.then(async () => { await runEvent(e) }).catch(err => {
          events.push({ t_ms: Math.round(sinceLoad()), kind: e.kind, detail: `failed: ${(err as Error).message}` })
        })
      }
      if (now - lastStats >= 1_000 && !sampling) {
        lastStats = now
        sampling = true
        // host stats, and a gossip probe from a random live node (checked once the run is over)
        const sender = random.pick([...placed.values()])
        void (async () => {
          const stats = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: false })))
          statsSeries.push({ atMs: now, stats })
          const seq = await sender.host.call<string>({ op: 'probe', name: sender.name }).catch(() => null)
          if (seq != null && placed.has(sender.name)) gossipProbes.push({ peerId: sender.peerId, seq, sentAtMs: Date.now() })
        })().catch(() => {}).finally(() => { sampling = false })
      }
      if (now - lastProgress >= PROGRESS_MS) {
        lastProgress = now
        const done = jobs.length
        const ok = jobs.filter(j => j.ok).length
        say(`  [${elapsed()}] load ${(now / 1000).toFixed(0)}/${scenario.durationMs / 1000} s: ${done} done (${ok} ok), ${inFlight.size} in flight, ${placed.size} nodes`)
      }
      await sleep(Math.min(50, Math.max(1, (arrivals[nextArrival]?.atMs ?? Infinity) - sinceLoad())))
    }
    say(`  [${elapsed()}] load over; waiting for ${inFlight.size} requests in flight`)
    await Promise.race([Promise.allSettled([...inFlight, eventChain]), sleep(DRAIN_TIMEOUT_MS)])
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
    const final = await Promise.all(hosts.map(async h => h.call<HostStats>({ op: 'stats', channels: true })))
    say(`  [${elapsed()}] measured; stopping nodes`)
    return summarise({
      scenario, seed, formedMs, durationMs: performance.now() - t0, hosts: hosts.length, nodesStarted: scenario.nodes.bootstrap + scenario.nodes.proxy + workerCount + scenario.nodes.client,
      jobs, events, statsSeries, final, gossip: { seen, expected }, dhtMs
    })
  } finally {
    await Promise.all(hosts.map(async h => { await h.shutdown() }))
    await chain?.close()
    await rm(root, { recursive: true, force: true }).catch(() => {})
  }
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

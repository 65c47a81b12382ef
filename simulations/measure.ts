/**
 * Turns what the hosts reported into a SimResult: job outcomes into success
 * rates and percentiles (overall and per time bucket), host stats into memory
 * and event-loop lag, channel records from both ends into the money check,
 * and the scenario's invariants into violations.
 */
import type { JobRecord, RogueRecord } from './runner.js'
import type { HostStats, NodeView } from './protocol.js'
import type { SimAdversary, SimEarning, SimEvent, SimResult, SimSeriesPoint } from './report/types.js'
import type { Scenario } from './scenario.js'

export interface Collected {
  scenario: Scenario
  seed: number
  formedMs: number
  /** Why the swarm did not form by its deadline (the run went on and is measured). */
  formFailure?: string
  durationMs: number
  hosts: number
  nodesStarted: number
  jobs: JobRecord[]
  events: SimEvent[]
  statsSeries: Array<{ atMs: number, stats: HostStats[] }>
  final: HostStats[]
  gossip: { seen: number, expected: number }
  dhtMs: number[]
  rogues: RogueRecord[]
  warmup?: { ms: number, ok: number, failed: number }
  /** What a payee lets a payer owe before it stops serving, nanoTON (the most a cheat can take per channel). */
  creditWindow: bigint
  commissionBp: number
}

/** What each adversary got that it was not owed, against the most the protocol lets it take. */
export function judgeAdversaries (c: Collected, views: NodeView[]): SimAdversary[] {
  const { scenario } = c
  // a client pays the worker's price plus the proxy's commission
  const perCompletionToken = (n: number): bigint => BigInt(n) * BigInt(scenario.worker.priceCompletionPerM) * BigInt(10_000 + c.commissionBp) / 10_000n / 1_000_000n
  return c.rogues.map(r => {
    if (r.kind === 'stops_paying') {
      const own = c.jobs.filter(j => j.client === r.name)
      const value = own.reduce((sum, j) => sum + (j.ok ? BigInt(j.costNanoton ?? '0') : perCompletionToken(j.chunks)), 0n)
      const channels = views.filter(v => v.name === r.name).flatMap(v => v.channels.filter(ch => ch.side === 'payer'))
      const paid = channels.reduce((sum, ch) => sum + BigInt(ch.cumulative ?? '0'), 0n)
      const gained = value > paid ? value - paid : 0n
      const refused = own.find(j => !j.ok && j.atMs >= r.startedAtMs)
      return {
        kind: r.kind,
        peer: r.peer,
        gained_nanoton: gained.toString(),
        bound_nanoton: (c.creditWindow * BigInt(Math.max(1, channels.length))).toString(),
        shunned_after_ms: refused == null ? null : Math.round(refused.atMs - r.startedAtMs),
        detail: `${own.filter(j => j.atMs >= r.startedAtMs).length} requests after it stopped paying, ${own.filter(j => j.atMs >= r.startedAtMs && j.ok).length} answered; received ${value} nanoTON of service, paid ${paid}`
      }
    }
    const paidToIt = views.flatMap(v => v.channels.filter(ch => ch.side === 'payer' && ch.peer === r.peer)).reduce((sum, ch) => sum + BigInt(ch.cumulative ?? '0'), 0n)
    return {
      kind: r.kind,
      peer: r.peer,
      gained_nanoton: paidToIt.toString(),
      bound_nanoton: c.creditWindow.toString(),
      shunned_after_ms: r.shunnedAtMs == null ? null : Math.round(r.shunnedAtMs - r.startedAtMs),
      detail: `${r.listedAtEnd ? 'listed by a proxy at the end' : 'in no proxy\'s registry at the end'}; ${r.shunnedAtMs == null ? 'never graylisted by every proxy' : 'graylisted by every proxy'}`
    }
  })
}

export function quantile (values: number[], q: number): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return round(sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo))
}

const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d
const MIB = 1024 * 1024

/** Both ends' records of every channel, and what each role paid or earned. */
export function checkMoney (nodes: NodeView[]): { conserved: boolean, problems: string[], clientsPaid: bigint, workersEarned: bigint, proxiesKept: bigint, earnings: SimEarning[] } {
  const problems: string[] = []
  const ends = new Map<string, { payer?: { node: NodeView, amount: bigint }, payee?: { node: NodeView, amount: bigint } }>()
  const earned = new Map<string, bigint>()
  for (const node of nodes) {
    for (const c of node.channels) {
      const amount = BigInt(c.cumulative ?? '0')
      const entry = ends.get(c.address) ?? {}
      if (c.side === 'payer') entry.payer = { node, amount }
      else entry.payee = { node, amount }
      ends.set(c.address, entry)
      const sign = c.side === 'payer' ? -1n : 1n
      earned.set(node.name, (earned.get(node.name) ?? 0n) + sign * amount)
    }
  }
  let clientsPaid = 0n
  let proxiesReceived = 0n
  let proxiesPaid = 0n
  let workersEarned = 0n
  for (const [address, { payer, payee }] of ends) {
    if (payer != null && payee != null && payer.amount !== payee.amount) {
      problems.push(`channel ${address.slice(0, 14)}…: ${payer.node.name} (payer) records ${payer.amount} nanoTON, ${payee.node.name} (payee) records ${payee.amount}`)
    }
    // a crashed node's records are gone from view: count the surviving end's
    const amount = payer?.amount ?? payee?.amount ?? 0n
    const payerRole = payer?.node.role ?? (payee?.node.role === 'proxy' ? 'client' : 'proxy')
    if (payerRole === 'client') { clientsPaid += amount; proxiesReceived += payee?.amount ?? amount }
    if (payerRole === 'proxy') { proxiesPaid += amount; workersEarned += payee?.amount ?? amount }
  }
  if (clientsPaid !== proxiesReceived) problems.push(`clients paid ${clientsPaid} nanoTON but proxies received ${proxiesReceived}`)
  // may be negative: a client that stops paying leaves its proxy a loss of up to a credit window (judged per adversary)
  const proxiesKept = proxiesReceived - proxiesPaid
  const earnings: SimEarning[] = nodes.filter(n => n.role !== 'bootstrap' && n.channels.length > 0).map(n => ({
    peer: n.name,
    role: n.role as SimEarning['role'],
    nanoton: (n.role === 'client' ? -(earned.get(n.name) ?? 0n) : (earned.get(n.name) ?? 0n)).toString(),
    adversary: false
  }))
  return { conserved: problems.length === 0, problems, clientsPaid, workersEarned, proxiesKept, earnings }
}

export function summarise (c: Collected): SimResult {
  const { scenario } = c
  const ok = c.jobs.filter(j => j.ok)
  const ttfts = ok.flatMap(j => j.ttftMs == null ? [] : [j.ttftMs])
  const latencies = ok.map(j => j.latencyMs)
  const successRate = c.jobs.length === 0 ? 1 : ok.length / c.jobs.length

  // buckets of about a thirtieth of the run, at least a second
  const bucketMs = Math.max(1_000, Math.ceil(scenario.durationMs / 30 / 1_000) * 1_000)
  const series: SimSeriesPoint[] = []
  for (let t = 0; t < scenario.durationMs; t += bucketMs) {
    const inBucket = c.jobs.filter(j => j.atMs >= t && j.atMs < t + bucketMs)
    const good = inBucket.filter(j => j.ok)
    const lags = c.statsSeries.filter(s => s.atMs >= t && s.atMs < t + bucketMs).flatMap(s => s.stats.map(h => h.lagP99Ms))
    series.push({
      t_ms: t,
      jobs: inBucket.length,
      ok: good.length,
      failed: inBucket.length - good.length,
      success_rate: inBucket.length === 0 ? 1 : round(good.length / inBucket.length, 4),
      ttft_p50_ms: quantile(good.flatMap(j => j.ttftMs == null ? [] : [j.ttftMs]), 0.5),
      ttft_p99_ms: quantile(good.flatMap(j => j.ttftMs == null ? [] : [j.ttftMs]), 0.99),
      latency_p50_ms: quantile(good.map(j => j.latencyMs), 0.5),
      latency_p99_ms: quantile(good.map(j => j.latencyMs), 0.99),
      event_loop_lag_p99_ms: lags.length === 0 ? null : round(Math.max(...lags))
    })
  }

  const allLags = c.statsSeries.flatMap(s => s.stats.map(h => h.lagP99Ms))
  const cores = c.statsSeries.map(s => s.stats.reduce((sum, h) => sum + h.cpuFraction, 0))
  const nodesDuringLoad = c.statsSeries.map(s => s.stats.reduce((sum, h) => sum + h.nodes.length, 0))
  const nodesAtEnd = c.final.reduce((sum, h) => sum + h.nodes.length, 0)
  const rssGrowth = c.final.reduce((sum, h) => sum + Math.max(0, h.rssBytes - h.baseRssBytes), 0)
  const views = c.final.flatMap(h => h.nodes)
  const money = scenario.settlement ? checkMoney(views) : undefined
  const adversaries = judgeAdversaries(c, views)
  if (money != null) {
    for (const e of money.earnings) e.adversary = c.rogues.some(r => r.name === e.peer)
  }
  const gossipDelays = c.statsSeries.flatMap(s => s.stats.flatMap(h => h.gossipDelaysMs)).concat(c.final.flatMap(h => h.gossipDelaysMs))
  const workers = views.filter(v => v.work != null)
  const slotMs = workers.reduce((sum, v) => sum + (v.work?.slots ?? 0), 0) * scenario.durationMs
  const busyMs = ok.reduce((sum, j) => sum + j.latencyMs, 0)
  const failovers = views.reduce((sum, v) => sum + (v.jobs?.retried ?? 0), 0)

  const rates = new Map<string, { messages: number, bytes: number, nodeMs: number }>()
  for (const { stats } of c.statsSeries) {
    for (const h of stats) {
      for (const [key, v] of Object.entries(h.gossipAccepted)) {
        const r = rates.get(key) ?? { messages: 0, bytes: 0, nodeMs: 0 }
        r.messages += v.messages
        r.bytes += v.bytes
        r.nodeMs += v.nodes * h.windowMs
        rates.set(key, r)
      }
    }
  }
  const gossipPerNode = Object.fromEntries([...rates].filter(([, r]) => r.nodeMs > 0).map(([key, r]) => [key, {
    messages_per_s: round(r.messages / (r.nodeMs / 1000), 3),
    bytes_per_s: round(r.bytes / (r.nodeMs / 1000), 1)
  }]))
  const result: SimResult = {
    scenario: scenario.name,
    seed: c.seed,
    nodes: c.nodesStarted,
    roles: { bootstrap: scenario.nodes.bootstrap, proxy: scenario.nodes.proxy, worker: c.nodesStarted - scenario.nodes.bootstrap - scenario.nodes.proxy - scenario.nodes.client, client: scenario.nodes.client },
    processes: c.hosts,
    duration_ms: Math.round(c.durationMs),
    ok: true,
    violations: [],
    success_rate: round(successRate, 4),
    jobs: { total: c.jobs.length, ok: ok.length, failed: c.jobs.length - ok.length, failovers },
    ttft_p50_ms: quantile(ttfts, 0.5),
    ttft_p99_ms: quantile(ttfts, 0.99),
    latency_p50_ms: quantile(latencies, 0.5),
    latency_p99_ms: quantile(latencies, 0.99),
    money_conserved: money?.conserved ?? true,
    money: {
      clients_paid: (money?.clientsPaid ?? 0n).toString(),
      workers_earned: (money?.workersEarned ?? 0n).toString(),
      proxies_kept: (money?.proxiesKept ?? 0n).toString()
    },
    rss_per_node_mib: round(rssGrowth / MIB / Math.max(1, nodesAtEnd)),
    event_loop_lag_p99_ms: quantile(allLags, 0.99) ?? 0,
    cpu_ms_per_node_s: cores.length === 0 ? null : round(1000 * (quantile(cores, 0.5) ?? 0) / Math.max(1, quantile(nodesDuringLoad, 0.5) ?? 1), 2),
    gc_max_pause_ms: round(Math.max(0, ...c.statsSeries.flatMap(s => s.stats.map(h => h.gcMaxPauseMs)))),
    gossip: {
      delivery_ratio: c.gossip.expected === 0 ? 1 : round(c.gossip.seen / c.gossip.expected, 4),
      latency_p50_ms: quantile(gossipDelays, 0.5),
      latency_p99_ms: quantile(gossipDelays, 0.99),
      samples: gossipDelays.length
    },
    dht: { lookup_p50_ms: quantile(c.dhtMs, 0.5), lookup_p99_ms: quantile(c.dhtMs, 0.99), samples: c.dhtMs.length },
    gossip_propagation_ms: sample(gossipDelays, 2_000),
    series,
    events: c.events,
    earnings: money?.earnings ?? [],
    adversaries,
    worker_utilisation: slotMs === 0 ? 0 : round(Math.min(1, busyMs / slotMs), 4),
    gossip_per_node: gossipPerNode,
    formed_ms: Math.round(c.formedMs),
    load_ms: scenario.durationMs,
    warmup: c.warmup
  }
  const reasons = new Map<string, number>()
  for (const j of c.jobs) {
    if (j.ok) continue
    const reason = (j.error ?? 'unknown').replace(/12D3Koo\w+/g, '<peer>').replace(/\d+/g, 'N').slice(0, 160)
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
  }
  result.errors = [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([reason, count]) => ({ reason, count }))
  const inv = scenario.invariants
  const violations: string[] = []
  if (c.formFailure != null) violations.push(c.formFailure)
  if (result.success_rate < inv.minSuccessRate) {
    const top = (result.errors ?? []).slice(0, 3).map(e => `${e.count}x ${e.reason.slice(0, 120)}`).join('; ')
    violations.push(`success rate ${result.success_rate} is below the floor ${inv.minSuccessRate} (${top})`)
  }
  if (inv.moneyConserved && money != null && !money.conserved) violations.push(...money.problems.slice(0, 10))
  if (inv.maxTtftP99Ms != null && (result.ttft_p99_ms ?? Infinity) > inv.maxTtftP99Ms) violations.push(`TTFT p99 ${result.ttft_p99_ms} ms is above ${inv.maxTtftP99Ms} ms`)
  if (inv.maxEventLoopLagP99Ms != null && result.event_loop_lag_p99_ms > inv.maxEventLoopLagP99Ms) violations.push(`event-loop lag p99 ${result.event_loop_lag_p99_ms} ms is above ${inv.maxEventLoopLagP99Ms} ms`)
  if (inv.maxRssPerNodeMiB != null && result.rss_per_node_mib > inv.maxRssPerNodeMiB) violations.push(`RSS per node ${result.rss_per_node_mib} MiB is above ${inv.maxRssPerNodeMiB} MiB`)
  if (c.jobs.length === 0 && scenario.load.ratePerClient > 0) violations.push('no request was sent')
  for (const a of adversaries) {
    if (BigInt(a.gained_nanoton) > BigInt(a.bound_nanoton)) violations.push(`${a.kind} ${a.peer.slice(-8)} gained ${a.gained_nanoton} nanoTON, more than the ${a.bound_nanoton} the credit window allows`)
  }
  result.violations = violations
  result.ok = violations.length === 0
  return result
}

/** At most `n` evenly spaced values of the sorted input (enough for a CDF). */
function sample (values: number[], n: number): number[] {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length <= n) return sorted.map(v => round(v))
  return Array.from({ length: n }, (_, i) => round(sorted[Math.floor(i * (sorted.length - 1) / (n - 1))]))
}

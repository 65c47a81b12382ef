/**
 * A simulator host process: runs many real Cocoon nodes (the project's own
 * node code, `startNode`) in one process and obeys the coordinator over IPC:
 * start nodes, stop or crash one, run a chat completion through a client's
 * OpenAI-compatible API, report stats (memory, event-loop lag, channels,
 * registries, gossip delays), probe gossip delivery and DHT lookups.
 */
import '../src/polyfills.js'
import { join } from 'node:path'
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks'
import { defaults, merge, validate } from '../src/config/load.js'
import { PRESENCE_TOPIC } from '../src/p2p/constants.js'
import { modelKey } from '../src/p2p/dht-keys.js'
import { Presence } from '../src/gen/node.pb.js'
import { ROLE_PROFILES } from '../src/roles/profiles.js'
import { startNode } from '../src/roles/runtime.js'
import { capacitySpammer, forgedWorker, stopPaying } from './adversaries.js'
import type { RogueNode } from './adversaries.js'
import type { HostProgress, HostReply, HostRequest, HostStats, JobOutcome, JobSpec, NodeSpec, NodeView, StartedNode } from './protocol.js'
import type { ClientRole } from '../src/roles/client/client-role.js'
import type { ProxyRole } from '../src/roles/proxy/proxy-role.js'
import type { RunningNode } from '../src/roles/runtime.js'
import type { WorkerRole } from '../src/roles/worker/worker-role.js'
import type { SyntheticBackend } from '../src/roles/worker/backends/synthetic.js'
import type { Message } from '@libp2p/gossipsub'

const hostIndex = Number(process.env.COCOON_SIM_HOST ?? 0)
const root = process.env.COCOON_SIM_ROOT ?? '.'
const nodes = new Map<string, { spec: NodeSpec, node: RunningNode }>()
const baseRssBytes = process.memoryUsage().rss
const lag = monitorEventLoopDelay({ resolution: 10 })
lag.enable()
let cpuAtWindowStart = process.cpuUsage()
let gcMaxPauseMs = 0
new PerformanceObserver(list => {
  for (const entry of list.getEntries()) {
    gcMaxPauseMs = Math.max(gcMaxPauseMs, entry.duration)
  }
}).observe({ entryTypes: ['gc'] })
/** Bounded: a long run must not grow this without limit between stats calls. */
const MAX_GOSSIP_SAMPLES = 20_000
let gossipDelaysMs: number[] = []
let gossipAccepted = new Map<string, { messages: number, bytes: number }>()
let windowStartMs = Date.now()
let connectionsOpened = 0
let connectionsClosed = 0
const rogues: RogueNode[] = []
/** Nodes younger than this when a gossip probe was sent are not expected to have it. */
const PROBE_MIN_AGE_MS = 5_000
/** Peers on the other side of a partition: every node here refuses them. */
const blocked = new Set<string>()
const denyPeer = (peerId: string): boolean => blocked.has(peerId)

function configFor (spec: NodeSpec): ReturnType<typeof validate> {
  return validate(merge(merge(defaults('local', spec.role, {}), {
    role: spec.role,
    network: 'local',
    dataDir: join(root, spec.name),
    listen: ['/ip4/127.0.0.1/tcp/0'],
    announce: [],
    bootstrap: spec.bootstrap,
    useDefaultBootstrap: false,
    logLevel: 'silent',
    admin: { enabled: false, host: '127.0.0.1', port: 0 },
    dht: { addressFilter: 'all' },
    client: { api: { port: 0 } }
  }), spec.overrides))
}

async function start (specs: NodeSpec[], parallel: number): Promise<StartedNode[]> {
  const out: StartedNode[] = []
  let next = 0
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, specs.length)) }, async () => {
    while (next < specs.length) {
      const spec = specs[next++]
      const began = performance.now()
      const node = await startNode(configFor(spec), { logPrefix: spec.name, metrics: false, denyPeer })
      process.send?.({ progress: { name: spec.name, role: spec.role, startMs: performance.now() - began } } satisfies HostProgress)
      nodes.set(spec.name, { spec, node })
      node.node.addEventListener('connection:open', () => { connectionsOpened++ })
      node.node.addEventListener('connection:close', () => { connectionsClosed++ })
      // gossip delay: the sender's timestamp to acceptance here (one machine, one clock)
      node.node.services.pubsub.addEventListener('message', (evt: CustomEvent<Message>) => {
        const key = `${spec.role} ${evt.detail.topic === PRESENCE_TOPIC ? 'presence' : 'capacity'}`
        const counted = gossipAccepted.get(key) ?? { messages: 0, bytes: 0 }
        counted.messages++
        counted.bytes += evt.detail.data.byteLength
        gossipAccepted.set(key, counted)
        if (evt.detail.topic !== PRESENCE_TOPIC || gossipDelaysMs.length >= MAX_GOSSIP_SAMPLES) return
        try {
          gossipDelaysMs.push(Date.now() - Number(Presence.decode(evt.detail.data).timestampMs))
        } catch {}
      })
      out.push({
        name: spec.name,
        role: spec.role,
        peerId: node.peerId.toString(),
        addrs: node.addrs(),
        apiUrl: spec.role === 'client' ? (node.role as ClientRole).apiUrl : null
      })
    }
  }))
  return out
}

function get (name: string): RunningNode {
  const entry = nodes.get(name)
  if (entry == null) throw new Error(`no node ${name} on host ${hostIndex}`)
  return entry.node
}

async function stop (name: string, crash: boolean): Promise<void> {
  const node = get(name)
  nodes.delete(name)
  if (crash) {
    // a crash: connections drop with no goodbye (no withdrawal, no cooperative anything)
    await node.node.stop()
  }
  await node.stop()
}

/** One streamed chat completion through the client's OpenAI-compatible API. */
async function job (spec: JobSpec): Promise<JobOutcome> {
  const client = nodes.get(spec.client)
  const apiUrl = client == null ? null : (client.node.role as ClientRole).apiUrl
  const began = performance.now()
  let chunks = 0
  const fail = (error: string): JobOutcome => ({ ok: false, ttftMs: null, latencyMs: performance.now() - began, completionTokens: 0, chunks, costNanoton: null, error })
  if (apiUrl == null) return fail(`client ${spec.client} has no API`)
  const prompt = Array.from({ length: spec.promptTokens }, (_, i) => `w${i % 97}`).join(' ')
  let ttftMs: number | null = null
  let completionTokens = 0
  let costNanoton: string | null = null
  try {
    const res = await fetch(`${apiUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: spec.model, messages: [{ role: 'user', content: prompt }], max_tokens: spec.maxTokens, stream: true, stream_options: { include_usage: true } }),
      signal: AbortSignal.timeout(spec.timeoutMs)
    })
    if (!res.ok || res.body == null) return fail(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`)
    const decoder = new TextDecoder()
    let buffered = ''
    let done = false
    const reader = res.body.getReader()
    for (;;) {
      const { value: piece, done: ended } = await reader.read()
      if (ended) break
      buffered += decoder.decode(piece, { stream: true })
      let nl
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim()
        buffered = buffered.slice(nl + 1)
        if (!line.startsWith('data:')) continue
        const data = line.slice(5).trim()
        if (data === '[DONE]') { done = true; continue }
        const chunk = JSON.parse(data) as { error?: { message?: string }, choices?: Array<{ delta?: { content?: string } }>, usage?: { completion_tokens?: number, cost_nanoton?: { client?: string } } | null }
        if (chunk.error != null) return fail(chunk.error.message ?? 'stream error')
        if ((chunk.choices?.[0]?.delta?.content ?? '') !== '') {
          chunks++
          ttftMs ??= performance.now() - began
        }
        if (chunk.usage != null) {
          completionTokens = chunk.usage.completion_tokens ?? 0
          costNanoton = chunk.usage.cost_nanoton?.client ?? null
        }
      }
    }
    if (!done) return fail('the stream ended without [DONE]')
    return { ok: true, ttftMs, latencyMs: performance.now() - began, completionTokens, chunks, costNanoton, error: null }
  } catch (err) {
    return fail((err as Error).message)
  }
}

async function stats (withChannels: boolean): Promise<HostStats> {
  const views: NodeView[] = []
  for (const { spec, node } of nodes.values()) {
    const view: NodeView = { name: spec.name, role: spec.role, peerId: node.peerId.toString(), known: 0, connections: node.node.getConnections().length, channels: [] }
    if (spec.role === 'proxy') {
      const role = node.role as ProxyRole
      view.known = role.registry.list().filter(w => w.state === 'up').length
      const s = role.jobs.status()
      view.jobs = { relayed: s.relayed, failed: s.failed, retried: s.retried }
    } else if (spec.role === 'client') {
      // through the DHT or presence, as the client's own pool counts them
      view.known = (node.role as ClientRole).pool.known().length
    } else if (spec.role === 'worker') {
      const role = node.role as WorkerRole
      const b = role.backend?.status()
      const slots = node.config.worker.models.reduce((sum, m) => sum + m.maxConcurrent, 0)
      if (b != null) view.work = { completed: b.completed, failed: b.failed, tokens: b.tokens, running: b.running, slots }
    }
    if (withChannels && node.settlement != null) {
      view.channels = (await node.settlement.status()).channels.map(c => ({
        address: c.address, side: c.side, peer: c.peer, cumulative: c.cumulative, countersigned: c.countersigned, seqno: c.seqno
      }))
    }
    views.push(view)
  }
  const perRole = new Map<string, number>()
  for (const { spec } of nodes.values()) perRole.set(spec.role, (perRole.get(spec.role) ?? 0) + 1)
  const cpu = process.cpuUsage(cpuAtWindowStart)
  cpuAtWindowStart = process.cpuUsage()
  const cpuMs = (cpu.user + cpu.system) / 1000
  const result: HostStats = {
    host: hostIndex,
    gossipAccepted: Object.fromEntries([...gossipAccepted].map(([key, v]) => [key, { ...v, nodes: perRole.get(key.split(' ')[0]) ?? 0 }])),
    windowMs: Date.now() - windowStartMs,
    rssBytes: process.memoryUsage().rss,
    baseRssBytes,
    lagP99Ms: lag.percentile(99) / 1e6,
    lagMaxMs: lag.max / 1e6,
    cpuFraction: cpuMs / Math.max(1, Date.now() - windowStartMs),
    gcMaxPauseMs,
    nodes: views,
    gossipDelaysMs,
    connectionsOpened,
    connectionsClosed
  }
  connectionsOpened = 0
  connectionsClosed = 0
  lag.reset()
  gcMaxPauseMs = 0
  gossipDelaysMs = []
  gossipAccepted = new Map()
  windowStartMs = Date.now()
  return result
}

async function handle (req: HostRequest): Promise<unknown> {
  switch (req.op) {
    case 'start': return start(req.specs, req.parallel)
    case 'stop': return stop(req.name, req.crash)
    case 'job': return job(req.job)
    case 'stats': return stats(req.channels)
    case 'probe': {
      const node = get(req.name)
      await node.presence.announce()
      return node.presence.lastSentSeq.toString()
    }
    case 'probeSeen': {
      let seen = 0
      let total = 0
      for (const { node } of nodes.values()) {
        // a node that had only just started may not be in the mesh yet: judge those up a few seconds before
        // workers take no presence: delivery is judged at the nodes that do
        if (!ROLE_PROFILES[node.config.role].presenceListen) continue
        if (node.peerId.toString() === req.peerId || node.startedAtMs > req.sentAtMs - PROBE_MIN_AGE_MS) continue
        total++
        if (node.directory.lastSeq(req.peerId) >= BigInt(req.seq)) seen++
      }
      return { seen, total }
    }
    case 'dhtLookup': {
      const node = get(req.name)
      const key = await modelKey(req.model)
      const began = performance.now()
      for await (const event of node.node.services.dht.findProviders(key, { signal: AbortSignal.timeout(req.timeoutMs) })) {
        if (event.name === 'PROVIDER' && event.providers.length > 0) return performance.now() - began
      }
      return null
    }
    case 'block': {
      for (const p of req.peers) blocked.add(p)
      // cut what is open now; the gate refuses every new connection
      await Promise.all([...nodes.values()].flatMap(({ node }) => node.node.getConnections()
        .filter(c => blocked.has(c.remotePeer.toString()))
        .map(async c => { await c.close().catch(() => { c.abort(new Error('partitioned')) }) })))
      return blocked.size
    }
    case 'unblock':
      blocked.clear()
      return 0
    case 'slowDown': {
      const backend = (get(req.name).role as WorkerRole).backend
      if (backend == null || !('slowDown' in backend)) throw new Error(`${req.name} has no synthetic backend to slow down`)
      ;(backend as SyntheticBackend).slowDown(req.factor)
      return null
    }
    case 'adversary': {
      if (req.kind === 'stops_paying') {
        stopPaying(get(req.name))
        return get(req.name).peerId.toString()
      }
      const rogue = await (req.kind === 'forged_attestation' ? forgedWorker : capacitySpammer)({ dial: req.dial, model: req.model, ratePerSec: req.ratePerSec })
      rogues.push(rogue)
      return rogue.node.peerId.toString()
    }
    case 'scores': {
      const out: Array<{ proxy: string, score: number, listed: boolean }> = []
      for (const { spec, node } of nodes.values()) {
        if (spec.role !== 'proxy') continue
        const score = (node.node.services.pubsub as unknown as { getScore(id: string): number }).getScore(req.peerId)
        out.push({ proxy: spec.name, score, listed: (node.role as ProxyRole).registry.get(req.peerId) != null })
      }
      return out
    }
    case 'shutdown': {
      await Promise.all(rogues.map(async r => { await r.stop().catch(() => {}) }))
      await Promise.all([...nodes.values()].map(async ({ node }) => { await node.stop().catch(() => {}) }))
      nodes.clear()
      setTimeout(() => { process.exit(0) }, 50)
      return null
    }
  }
}

process.on('message', (req: HostRequest) => {
  handle(req).then(
    value => { process.send?.({ re: req.id, ok: true, value } satisfies HostReply) },
    (err: unknown) => { process.send?.({ re: req.id, ok: false, error: (err as Error).message ?? String(err) } satisfies HostReply) }
  )
})
// the coordinator went away: nothing left to serve
process.on('disconnect', () => { process.exit(0) })
process.send?.({ re: 0, ok: true, value: 'ready' } satisfies HostReply)

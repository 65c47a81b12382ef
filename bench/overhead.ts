/**
 * `npm run bench:overhead`: what the network adds on top of the backend,
 * after COCOON's own benchmark. The synthetic backend streams 50 chunks of
 * 128 bytes; 30 concurrent streaming clients send chat completions for 20 s
 *   (a) straight to the backend over HTTP (the same OpenAI-compatible HTTP
 *       layer the client serves, in its own process), and
 *   (b) through client → proxy → worker: four `cocoon node` processes
 *       (bootstrap, proxy, worker, client) on loopback, sealed end to end, and
 *   (c) the same, paid as it streams, settling on a `cocoon chain` devnet, and
 *   (d) through one plain HTTP reverse proxy (Node's `http`) in front of (a):
 *       the minimal gateway a user could pick instead, for the added latency
 *       per hop next to the swarm's.
 * Prints requests/s, time to first chunk and total latency (p50/p99) for
 * each, the ratios, and each node's CPU time per request (from /proc).
 * Writes bench/results/overhead.json.
 *
 * Options: --seconds N (20), --concurrency N (30), --chunks N (50), --chunk-bytes N (128), --no-paid (skip c).
 */
import { spawn } from 'node:child_process'
import { Agent, createServer, request as httpRequest } from 'node:http'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { streamChat } from '../src/inference/stream-chat.js'
import { startApiServer } from '../src/roles/client/http-api.js'
import { SyntheticBackend } from '../src/roles/worker/backends/synthetic.js'
import { readNodeFile } from '../src/ops/node-file.js'
import { waitFor } from '../src/ops/wait-for.js'
import { packageRoot } from '../src/package-info.js'
import { median, quantile, round, settle, writeResult } from './stats.js'
import type { ApiEvent, ApiJob, CompletionService } from '../src/roles/client/api-types.js'
import type { ChildProcess } from 'node:child_process'
import type { AddressInfo } from 'node:net'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '20' },
    concurrency: { type: 'string', default: '30' },
    chunks: { type: 'string', default: '50' },
    'chunk-bytes': { type: 'string', default: '128' },
    'serve-direct': { type: 'boolean' },
    'serve-relay': { type: 'string' },
    'no-paid': { type: 'boolean' }
  }
})
const SECONDS = Number(values.seconds)
const CONCURRENCY = Number(values.concurrency)
const CHUNKS = Number(values.chunks)
const CHUNK_BYTES = Number(values['chunk-bytes'])
const MODEL = 'cocoon-synthetic'
const CLOCK_TICKS_PER_S = 100

interface Sample { firstChunkMs: number, totalMs: number }
interface RunResult { requests: number, errors: number, seconds: number, samples: Sample[] }

/** One streaming chat completion; resolves with its timings, or throws. */
async function streamOne (apiUrl: string): Promise<Sample> {
  const r = await streamChat(apiUrl, { model: MODEL, messages: [{ role: 'user', content: `benchmark ${Math.random()}` }] })
  if (r.chunks !== CHUNKS) throw new Error(`got ${r.chunks} chunks`)
  return { firstChunkMs: r.firstChunkMs ?? r.totalMs, totalMs: r.totalMs }
}

/** CONCURRENCY loops sending requests back to back for SECONDS. */
async function load (apiUrl: string): Promise<RunResult> {
  const samples: Sample[] = []
  let errors = 0
  let firstError: string | undefined
  const endAt = performance.now() + SECONDS * 1000
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (performance.now() < endAt) {
      try {
        samples.push(await streamOne(apiUrl))
      } catch (err) {
        errors++
        firstError ??= (err as Error).message
      }
    }
  }))
  if (firstError != null) console.log(`  ${errors} errors, the first: ${firstError}`)
  return { requests: samples.length, errors, seconds: (performance.now() - started) / 1000, samples }
}

function summary (r: RunResult): Record<string, number> {
  const first = r.samples.map(s => s.firstChunkMs)
  const total = r.samples.map(s => s.totalMs)
  return {
    requests: r.requests,
    errors: r.errors,
    requestsPerSecond: round(r.requests / r.seconds, 1),
    firstChunkP50Ms: round(median(first), 1),
    firstChunkP99Ms: round(quantile(first, 0.99), 1),
    totalP50Ms: round(median(total), 1),
    totalP99Ms: round(quantile(total, 0.99), 1)
  }
}

/**
 * A child process of this script serving HTTP: the direct baseline (the
 * synthetic backend behind the same HTTP layer) or the relay baseline (a
 * plain reverse proxy in front of it).
 */
async function childServer (args: string[]): Promise<{ url: string, child: ChildProcess }> {
  const child = spawn(process.execPath, [join(packageRoot(), 'dist', 'bench', 'overhead.js'), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, OVERHEAD_CHUNKS: String(CHUNKS), OVERHEAD_CHUNK_BYTES: String(CHUNK_BYTES) }
  })
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout?.on('data', (data: Buffer) => {
      const match = /^listening (\S+)/m.exec(data.toString())
      if (match != null) resolve(match[1])
    })
    child.on('exit', code => { reject(new Error(`${args.join(' ')} exited with ${String(code)}`)) })
  })
  return { url, child }
}

async function serveDirect (): Promise<void> {
  const backend = new SyntheticBackend({ models: [{ name: MODEL, contextLength: 2048 }], chunks: Number(process.env.OVERHEAD_CHUNKS), chunkBytes: Number(process.env.OVERHEAD_CHUNK_BYTES) })
  await backend.start()
  const service: CompletionService = {
    models: async () => [],
    run: async function * (job: ApiJob, signal: AbortSignal): AsyncGenerator<ApiEvent> {
      for await (const event of backend.generate({ kind: job.kind, model: job.model, body: job.body, maxTokens: job.maxTokens ?? 4096, signal })) {
        yield event.type === 'chunk' ? event : { type: 'done', usage: event.usage, finishReason: event.finishReason }
      }
    }
  }
  const server = await startApiServer({ host: '127.0.0.1', port: 0, service })
  process.stdout.write(`listening ${server.url}\n`)
}

/**
 * The baseline a user would otherwise pick: one plain HTTP reverse proxy
 * (Node's `http`, keep-alive to the backend, bodies piped as they come) in
 * front of the direct server, so the report can show what one minimal hop
 * adds next to what the swarm's hops add.
 */
async function serveRelay (target: string): Promise<void> {
  const upstream = new URL(target)
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 })
  const server = createServer((req, res) => {
    const up = httpRequest({ host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers, agent }, upRes => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers)
      upRes.pipe(res)
    })
    up.on('error', () => { res.destroy() })
    req.pipe(up)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  // the same URL as the target's, on the relay's port
  process.stdout.write(`listening ${target.replace(upstream.origin, `http://127.0.0.1:${(server.address() as AddressInfo).port}`)}\n`)
}

/** One measured load against a child server: its run and its CPU per request. */
async function measureChild (url: string, pid: number): Promise<{ run: RunResult, cpu: number }> {
  await streamOne(url)
  await settle()
  const before = await cpuMs(pid)
  const run = await load(url)
  return { run, cpu: round((await cpuMs(pid) - before) / Math.max(1, run.requests), 3) }
}

/** utime + stime of a process, in ms. */
async function cpuMs (pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 1000 / CLOCK_TICKS_PER_S
}

interface NodeProcess { role: string, child: ChildProcess, dataDir: string }

async function startCocoon (root: string, role: string, args: string[]): Promise<NodeProcess> {
  const dataDir = join(root, role)
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'cocoon.js'), 'node', '--role', role, '--data-dir', dataDir,
    '--listen', '/ip4/127.0.0.1/tcp/0', '--no-default-bootstrap', '--log-level', 'warn', '--admin-port', '0', ...args], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, COCOON_HOME: root }
  })
  await waitFor(async () => (await readNodeFile(dataDir))?.pid === child.pid, 30_000, `the ${role} to start`)
  return { role, child, dataDir }
}

/** `cocoon chain` on a free port: the devnet the paid run settles on. */
async function startChain (root: string): Promise<{ url: string, child: ChildProcess }> {
  const child = spawn(process.execPath, [join(packageRoot(), 'bin', 'cocoon.js'), 'chain', '--port', '0', '--data-dir', join(root, 'chain')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, COCOON_HOME: root }
  })
  let output = ''
  child.stderr?.on('data', (d: Buffer) => { output += d.toString() })
  let url = ''
  await waitFor(() => { url = /served on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1] ?? ''; return url !== '' }, 30_000, 'cocoon chain to serve')
  return { url, child }
}

async function throughSwarm (paid: boolean): Promise<{ run: RunResult, cpu: Record<string, number> }> {
  const root = await mkdtemp(join(tmpdir(), 'cocoon-overhead-'))
  const nodes: NodeProcess[] = []
  let chain: { url: string, child: ChildProcess } | undefined
  try {
    chain = paid ? await startChain(root) : undefined
    const settle = chain == null ? [] : ['--settlement', '--chain-endpoint', chain.url]
    nodes.push(await startCocoon(root, 'bootstrap', []))
    const boot = (await readNodeFile(nodes[0].dataDir))?.addrs[0] as string
    const workerConfig = join(root, 'worker.json')
    await writeFile(workerConfig, JSON.stringify({
      worker: {
        models: [{ name: MODEL, contextLength: 2048, pricePromptPerM: 20_000_000, priceCompletionPerM: 80_000_000, maxConcurrent: 64 }],
        synthetic: { chunks: CHUNKS, chunkBytes: CHUNK_BYTES, intervalMs: 0, firstChunkDelayMs: 0 }
      }
    }))
    nodes.push(await startCocoon(root, 'proxy', ['--bootstrap', boot, ...settle]))
    nodes.push(await startCocoon(root, 'worker', ['--bootstrap', boot, '--backend', 'synthetic', '--config', workerConfig, ...settle]))
    nodes.push(await startCocoon(root, 'client', ['--bootstrap', boot, '--api-port', '0', ...settle]))
    const admin = (await readNodeFile(nodes[3].dataDir))?.admin as string
    let apiUrl = ''
    await waitFor(async () => {
      const status = await (await fetch(`${admin}/status`)).json() as { roleStatus: { api: string | null } }
      apiUrl = status.roleStatus.api ?? ''
      if (apiUrl === '') return false
      const models = await fetch(`${apiUrl}/v1/models`)
      return models.ok && ((await models.json()) as { data: Array<{ workers: number }> }).data.some(m => m.workers > 0)
    }, 60_000, 'the client to see the worker')
    await streamOne(apiUrl) // warm: attestation, evidence, connections (and, paid, the client's channel)
    const pids = Object.fromEntries(nodes.map(n => [n.role, n.child.pid as number]))
    const before = Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([role, pid]) => [role, await cpuMs(pid)] as const)))
    const run = await load(apiUrl)
    const cpu: Record<string, number> = {}
    for (const [role, pid] of Object.entries(pids)) cpu[role] = round((await cpuMs(pid) - before[role]) / Math.max(1, run.requests), 3)
    return { run, cpu }
  } finally {
    for (const n of nodes.reverse()) n.child.kill('SIGTERM')
    await Promise.all(nodes.map(async n => new Promise(resolve => { if (n.child.exitCode != null) resolve(undefined); else n.child.once('exit', resolve) })))
    if (chain != null) {
      const c = chain.child
      c.kill('SIGTERM')
      await new Promise(resolve => { if (c.exitCode != null) resolve(undefined); else c.once('exit', resolve) })
    }
    await rm(root, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  console.log(`overhead: ${CONCURRENCY} concurrent streaming clients for ${SECONDS} s; the synthetic backend streams ${CHUNKS} chunks of ${CHUNK_BYTES} bytes`)
  const direct = await childServer(['--serve-direct'])
  let directRun: RunResult
  let directCpu: number
  let relayRun: RunResult
  let relayCpu: number
  try {
    ({ run: directRun, cpu: directCpu } = await measureChild(direct.url, direct.child.pid as number))
    const relay = await childServer(['--serve-relay', direct.url])
    try {
      ({ run: relayRun, cpu: relayCpu } = await measureChild(relay.url, relay.child.pid as number))
    } finally {
      relay.child.kill('SIGTERM')
    }
  } finally {
    direct.child.kill('SIGTERM')
  }
  await settle()
  const swarm = await throughSwarm(false)
  await settle()
  const paidSwarm = values['no-paid'] === true ? undefined : await throughSwarm(true)
  const a = summary(directRun)
  const d = summary(relayRun)
  const b = summary(swarm.run)
  const c = paidSwarm == null ? undefined : summary(paidSwarm.run)
  const ratio = {
    requestsPerSecond: round(b.requestsPerSecond / a.requestsPerSecond, 2),
    firstChunkP50: round(b.firstChunkP50Ms / a.firstChunkP50Ms, 2),
    firstChunkP99: round(b.firstChunkP99Ms / a.firstChunkP99Ms, 2),
    totalP50: round(b.totalP50Ms / a.totalP50Ms, 2),
    totalP99: round(b.totalP99Ms / a.totalP99Ms, 2)
  }
  const row = (name: string, s: Record<string, number>): string =>
    `  ${name.padEnd(30)} ${String(s.requestsPerSecond).padStart(7)} req/s   first chunk p50 ${String(s.firstChunkP50Ms).padStart(7)} ms  p99 ${String(s.firstChunkP99Ms).padStart(7)} ms   total p50 ${String(s.totalP50Ms).padStart(7)} ms  p99 ${String(s.totalP99Ms).padStart(7)} ms   (${s.requests} requests, ${s.errors} errors)`
  // added time to first chunk: one plain relay hop, and the swarm's two hops (client, proxy) in front of the worker
  const added = {
    relayFirstChunkP50Ms: round(d.firstChunkP50Ms - a.firstChunkP50Ms, 1),
    swarmFirstChunkP50Ms: round(b.firstChunkP50Ms - a.firstChunkP50Ms, 1),
    swarmPerHopFirstChunkP50Ms: round((b.firstChunkP50Ms - a.firstChunkP50Ms) / 2, 1)
  }
  console.log(row('(a) straight to the backend', a))
  console.log(row('(d) one plain HTTP relay', d))
  console.log(`  CPU per request: relay ${relayCpu} ms; first chunk p50 added: relay ${added.relayFirstChunkP50Ms} ms (one hop), swarm ${added.swarmFirstChunkP50Ms} ms (two hops, ${added.swarmPerHopFirstChunkP50Ms} ms each)`)
  console.log(row('(b) client → proxy → worker', b))
  console.log(`  ratio b/a: req/s ${ratio.requestsPerSecond}, first chunk p50 ${ratio.firstChunkP50} p99 ${ratio.firstChunkP99}, total p50 ${ratio.totalP50} p99 ${ratio.totalP99}`)
  console.log(`  CPU per request: proxy ${swarm.cpu.proxy} ms, worker ${swarm.cpu.worker} ms, client ${swarm.cpu.client} ms (direct backend server: ${directCpu} ms)`)
  if (c != null && paidSwarm != null) {
    console.log(row('(c) the same, paid as it streams', c))
    console.log(`  paid/unpaid (c/b): req/s ${round(c.requestsPerSecond / b.requestsPerSecond, 2)}, total p50 ${round(c.totalP50Ms / b.totalP50Ms, 2)}; CPU per request: proxy ${paidSwarm.cpu.proxy} ms, worker ${paidSwarm.cpu.worker} ms, client ${paidSwarm.cpu.client} ms`)
  }
  console.log('  all four processes and the load generator share this machine\'s cores')
  await writeResult('overhead', {
    date: new Date().toISOString(),
    setup: { seconds: SECONDS, concurrency: CONCURRENCY, chunks: CHUNKS, chunkBytes: CHUNK_BYTES, cores: (await import('node:os')).availableParallelism() },
    direct: { ...a, cpuMsPerRequest: directCpu },
    relay: { ...d, cpuMsPerRequest: relayCpu },
    added,
    network: { ...b, cpuMsPerRequest: swarm.cpu },
    ratio,
    ...(c == null || paidSwarm == null ? {} : { paid: { ...c, cpuMsPerRequest: paidSwarm.cpu, vsUnpaid: { requestsPerSecond: round(c.requestsPerSecond / b.requestsPerSecond, 2), totalP50: round(c.totalP50Ms / b.totalP50Ms, 2) } } })
  })
}

if (values['serve-direct'] === true) {
  await serveDirect()
} else if (values['serve-relay'] != null) {
  await serveRelay(values['serve-relay'])
} else {
  await main()
  process.exit(0)
}

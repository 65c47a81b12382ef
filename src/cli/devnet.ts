/**
 * `cocoon devnet`: a complete local swarm in one process (a bootstrap node, a
 * proxy, workers and a client) on loopback, with persistent identities under
 * ~/.cocoon/devnet. It waits until every node has found every other and the
 * proxy has attested the workers, then sends a sample chat completion through
 * the client's OpenAI-compatible API and prints the streamed answer, usage and
 * timings; then it keeps serving until Ctrl-C (or exits, --once).
 *
 * The nodes settle on one devnet chain (the TON emulator, kept in the data
 * dir): the client opens a funded channel to the proxy and the proxy one to
 * each worker before the sample, which is paid as it streams; the devnet
 * prints what the client paid, the worker earned and the proxy kept.
 * `--no-settlement` runs the swarm unpaid.
 */
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import { cocoonHome, DEFAULT_API_PORT, defaults, merge, validate } from '../config/load.js'
import { waitFor } from '../ops/wait-for.js'
import { streamChat } from '../inference/stream-chat.js'
import { knowThePublishers, startNode } from '../roles/runtime.js'
import { Devnet } from '../settlement/chain/index.js'
import { fromNano } from '@ton/core'
import { flagsToConfig } from './flags.js'
import { waitForShutdown } from './io.js'
import type { ClientRole } from '../roles/client/client-role.js'
import type { ProxyRole } from '../roles/proxy/proxy-role.js'
import type { CliIO } from './io.js'
import type { NodeConfig } from '../config/schema.js'
import type { RoleName } from '../config/role-names.js'
import type { RunningNode } from '../roles/runtime.js'

const MEET_TIMEOUT_MS = 30_000
/** A large GGUF on a slow disk takes a while to load. */
const MODEL_LOAD_TIMEOUT_MS = 120_000
const SAMPLE_PROMPT = 'In one sentence, what does a peer-to-peer inference network do?'
const SAMPLE_MAX_TOKENS = 48

export async function runDevnet (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      once: { type: 'boolean' },
      workers: { type: 'string' },
      'data-dir': { type: 'string' },
      'log-level': { type: 'string' },
      backend: { type: 'string' },
      model: { type: 'string' },
      'api-port': { type: 'string' },
      prompt: { type: 'string' },
      'no-settlement': { type: 'boolean' }
    },
    strict: true
  })
  const workers = values.workers == null ? 2 : Number(values.workers)
  if (!Number.isInteger(workers) || workers < 1 || workers > 16) {
    throw new ConfigError('workers', `expected a whole number from 1 to 16 (got ${JSON.stringify(values.workers)})`)
  }
  const root = values['data-dir'] ?? join(cocoonHome(io.env), 'devnet')
  const logLevel = values['log-level'] ?? 'warn'
  const apiPort = values['api-port'] == null ? DEFAULT_API_PORT : Number(values['api-port'])
  if (!Number.isInteger(apiPort) || apiPort < 0 || apiPort > 65535) {
    throw new ConfigError('api-port', `expected a port number 0-65535 (got ${JSON.stringify(values['api-port'])})`)
  }
  // the same --backend and --model as `cocoon node`
  const worker = flagsToConfig({ backend: values.backend, model: values.model }).worker ?? {}
  const settle = values['no-settlement'] !== true
  const configFor = (role: RoleName, name: string, bootstrap: string[], extra: Record<string, unknown> = {}): NodeConfig => validate(merge(merge(defaults('local', role, io.env), {
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
    maxConnections: 300,
    worker,
    settlement: { enabled: settle && role !== 'bootstrap' }
  }), extra))

  const t0 = performance.now()
  const nodes: RunningNode[] = []
  let devnet: Devnet | undefined
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await devnet?.close()
  }
  try {
    devnet = settle ? await Devnet.open(join(root, 'chain')) : undefined
    const boot = await startNode(configFor('bootstrap', 'bootstrap', []), { consoleWrite: io.err, logPrefix: 'bootstrap' })
    nodes.push(boot)
    const bootAddrs = boot.addrs().filter(a => !a.includes('/ws/'))
    const plan: Array<[RoleName, string]> = [['proxy', 'proxy'], ...Array.from({ length: workers }, (_, i): [RoleName, string] => ['worker', `worker-${i + 1}`]), ['client', 'client']]
    nodes.push(...await Promise.all(plan.filter(([role]) => role !== 'client').map(async ([role, name]) => startNode(configFor(role, name, bootAddrs), { consoleWrite: io.err, logPrefix: name, devnet }))))
    nodes.push(await startClient(configFor, bootAddrs, apiPort, io, devnet))
    const startedMs = performance.now() - t0

    await waitFor(() => knowThePublishers(nodes), MEET_TIMEOUT_MS, 'every node to learn the bootstrap nodes and proxies through presence gossip')
    const meshMs = performance.now() - t0
    const client = nodes[nodes.length - 1]
    await waitFor(() => ((client.role.status().proxies as unknown[] | undefined)?.length ?? 0) > 0, MEET_TIMEOUT_MS, 'the client to find the proxy in the DHT')
    const proxyFoundMs = performance.now() - t0
    const proxy = nodes.find(n => n.config.role === 'proxy')?.role as ProxyRole
    // the llama backend loads (and the first time generates) its model before the worker announces
    await waitFor(() => proxy.registry.list().filter(w => w.state === 'up').length >= workers, MEET_TIMEOUT_MS + MODEL_LOAD_TIMEOUT_MS, 'the proxy to attest every worker')
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
    if (settle) await openChannels(nodes, io)
    const apiUrl = (client.role as ClientRole).apiUrl
    if (apiUrl != null) {
      io.out(`  OpenAI-compatible API: ${apiUrl}/v1  (try: curl ${apiUrl}/v1/models)`)
      await sampleCompletion(apiUrl, values.prompt ?? SAMPLE_PROMPT, io)
    }
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

type ConfigFor = (role: RoleName, name: string, bootstrap: string[], extra?: Record<string, unknown>) => NodeConfig

/** The client, on the wanted API port, or any free one when that is taken. */
async function startClient (configFor: ConfigFor, bootAddrs: string[], apiPort: number, io: CliIO, devnet: Devnet | undefined): Promise<RunningNode> {
  try {
    return await startNode(configFor('client', 'client', bootAddrs, { client: { api: { port: apiPort } } }), { consoleWrite: io.err, logPrefix: 'client', devnet })
  } catch (err) {
    if (!(err instanceof ConfigError) || err.key !== 'client.api.port' || apiPort === 0) throw err
    io.err(`devnet: port ${apiPort} is taken; the API listens on a free port instead`)
    return startNode(configFor('client', 'client', bootAddrs, { client: { api: { port: 0 } } }), { consoleWrite: io.err, logPrefix: 'client', devnet })
  }
}

/** Funded channels before the first job: client → proxy, proxy → each worker (reused when the data dir has them). */
async function openChannels (nodes: RunningNode[], io: CliIO): Promise<void> {
  const proxy = nodes.find(n => n.config.role === 'proxy')
  const client = nodes.find(n => n.config.role === 'client')
  if (proxy?.settlement == null || client?.settlement == null) return
  const lines: string[] = []
  const open = async (payer: RunningNode, payee: RunningNode, name: string): Promise<void> => {
    const channel = await (payer.settlement as NonNullable<RunningNode['settlement']>).payerFor(payee.peerId.toString())
    lines.push(`    ${name}: ${channel.address} holds ${fromNano(channel.record.deposited)} TON, ${fromNano(channel.paid)} TON paid so far`)
  }
  await open(client, proxy, 'client → proxy')
  for (const [i, worker] of nodes.filter(n => n.config.role === 'worker').entries()) await open(proxy, worker, `proxy → worker-${i + 1}`)
  const wallet = await client.settlement.chain.wallet()
  io.out(`  payment channels on the devnet chain (client wallet ${wallet.address}: ${fromNano(wallet.balance)} TON):`)
  for (const line of lines) io.out(line)
}

/** Sends one streaming chat completion through the client's API and prints what came back. */
async function sampleCompletion (apiUrl: string, prompt: string, io: CliIO): Promise<void> {
  io.out(`  sample chat completion: ${JSON.stringify(prompt)}`)
  const models = await (await fetch(`${apiUrl}/v1/models`)).json() as { data: Array<{ id: string, synthetic?: boolean, description?: string }> }
  const model = models.data[0]
  if (model == null) throw new Error('the swarm offers no model')
  if (model.synthetic === true) io.out(`  (${model.id} is a synthetic test model: ${model.description ?? 'random weights'}; expect noise)`)
  let streamed
  try {
    streamed = await streamChat(apiUrl, { model: model.id, messages: [{ role: 'user', content: prompt }], max_tokens: SAMPLE_MAX_TOKENS, stream_options: { include_usage: true } })
  } catch (err) {
    throw new Error(`the sample completion failed: ${(err as Error).message}`)
  }
  const { text: answer, chunks, firstChunkMs, totalMs } = streamed
  const final = streamed.final as { usage?: { prompt_tokens: number, completion_tokens: number }, cocoon?: { worker: string, timings_ms: Record<string, Record<string, number>>, cost_nanoton?: { paid: string, worker: string | null, commission: string | null } } } | undefined
  io.out(`  answer (${chunks} chunks streamed): ${JSON.stringify(answer.length > 400 ? `${answer.slice(0, 400)}…` : answer)}`)
  const usage = final?.usage
  const worker = final?.cocoon?.timings_ms.worker
  io.out(`  usage: ${usage?.prompt_tokens ?? '?'} prompt + ${usage?.completion_tokens ?? '?'} completion tokens; first chunk after ${Math.round(firstChunkMs ?? totalMs)} ms, all after ${Math.round(totalMs)} ms (worker ${final?.cocoon?.worker ?? '?'}: ${worker?.first_chunk ?? '?'} ms to first chunk, ${worker?.total ?? '?'} ms in all); sealed end to end`)
  const cost = final?.cocoon?.cost_nanoton
  if (cost != null) {
    io.out(`  paid as it streamed: the client paid ${cost.paid} nanoTON, the worker earned ${cost.worker ?? '?'}, the proxy kept ${cost.commission ?? '?'}`)
  }
}

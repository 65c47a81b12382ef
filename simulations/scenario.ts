/**
 * Scenarios are data: `simulations/scenarios/<name>.json`, checked against
 * this schema before anything starts (a typo is an error that names the key,
 * never a silently different run). See simulations/README.md for every key.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'
import { packageRoot } from '../src/package-info.js'

const count = (what: string, max: number) => z.number({ error: `expected a number of ${what}` }).int().min(0).max(max)
const ms = (what: string, max = 3_600_000) => z.number({ error: `expected ${what} in ms` }).int().min(0).max(max)

const EVENT_KINDS = ['worker_join', 'worker_leave', 'worker_crash', 'proxy_crash', 'partition', 'heal', 'slow_worker'] as const

export const ScenarioSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9-]+$/, { error: 'expected a lower-case name (letters, digits, -)' }),
  description: z.string().max(500).default(''),
  seed: z.number().int().min(0).default(1),
  /** How long clients send load, after the swarm is ready. */
  durationMs: ms('a duration', 3_600_000),
  /** How long the swarm may take to form (every proxy knows every worker, every client a proxy) before the run fails. */
  formTimeoutMs: ms('a forming deadline', 3_600_000).default(300_000),
  /** The share of workers every proxy must know, and of clients that must know a proxy, for the swarm to count as formed. */
  formFraction: z.number().gt(0).max(1).default(1),
  /**
   * Workers and clients started a second, over all hosts (0: as fast as the
   * hosts start them). A real swarm grows by arrivals, not by a thousand
   * nodes booting in the same seconds; on a small machine an unpaced start
   * also starves the bootstrap node, whose handshakes then time out.
   */
  startPerSecond: z.number().min(0).max(10_000).default(0),
  /**
   * The bootstrap nodes get host 0 to themselves, as a bootstrap node would
   * have a machine of its own; every joining node handshakes with them first.
   */
  dedicatedBootstrapHost: z.boolean().default(false),
  /** Host processes the nodes are spread over (the coordinator runs none). */
  processes: z.number().int().min(1).max(64).default(2),
  nodes: z.strictObject({
    bootstrap: count('bootstrap nodes', 8).default(1),
    proxy: count('proxies', 1_000),
    worker: count('workers', 100_000),
    client: count('clients', 1_000)
  }),
  worker: z.strictObject({
    models: z.array(z.string().min(1).max(128)).min(1).max(16).default(['sim-model']),
    /** Slots per worker and model. */
    slots: z.number().int().min(1).max(256).default(4),
    /** Synthetic backend: tokens per second per job and time to the first token. */
    tokensPerSecond: z.number().min(1).max(100_000).default(200),
    firstTokenMs: ms('the time to the first token', 60_000).default(30),
    announceIntervalMs: ms('the announcement interval', 600_000).default(5_000),
    pricePromptPerM: z.number().int().min(0).default(20_000_000),
    priceCompletionPerM: z.number().int().min(0).default(80_000_000)
  }).prefault({}),
  load: z.strictObject({
    /** Requests per second per client (Poisson arrivals). */
    ratePerClient: z.number().min(0).max(1_000),
    promptTokens: z.tuple([z.number().int().min(1), z.number().int().min(1)]).default([20, 200]),
    answerTokens: z.tuple([z.number().int().min(1), z.number().int().min(1)]).default([10, 100]),
    /** Give up on a request after this long. */
    timeoutMs: ms('a request timeout', 600_000).default(30_000),
    /**
     * Requests each client sends before the measured load, one after another
     * (not counted): they open the client's payment channels, which a
     * long-running client has long since done.
     */
    warmupPerClient: z.number().int().min(0).max(100).default(1)
  }),
  settlement: z.boolean().default(true),
  /** What payees let a payer owe before holding its answers, nanoTON (null: the node default, settlement.creditWindow). */
  creditWindowNanoton: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullable().default(null),
  events: z.array(z.strictObject({
    atMs: ms('an event time'),
    kind: z.enum(EVENT_KINDS, { error: `expected one of ${EVENT_KINDS.join(', ')}` }),
    count: z.number().int().min(1).max(100_000).default(1),
    /** slow_worker: how much slower (tokens per second divided by this). */
    factor: z.number().min(1).max(1_000).default(10)
  })).default([]),
  /** Churn: workers leave (gracefully or by crash) and new ones join at these rates, per minute. */
  churn: z.strictObject({
    leavePerMin: z.number().min(0).max(10_000).default(0),
    crashPerMin: z.number().min(0).max(10_000).default(0),
    joinPerMin: z.number().min(0).max(10_000).default(0)
  }).prefault({}),
  /** Dishonest peers and when they start (see simulations/adversaries.ts). */
  adversaries: z.array(z.strictObject({
    kind: z.enum(['forged_attestation', 'capacity_spam', 'stops_paying'], { error: 'expected forged_attestation, capacity_spam or stops_paying' }),
    atMs: ms('a start time'),
    count: z.number().int().min(1).max(100).default(1),
    /** capacity_spam: messages a second. */
    ratePerSec: z.number().min(1).max(100_000).default(500)
  })).default([]),
  invariants: z.strictObject({
    /** Least share of requests that must succeed. */
    minSuccessRate: z.number().min(0).max(1).default(0.99),
    /** Clients' payments must equal what proxies and workers received, to the nanoTON. */
    moneyConserved: z.boolean().default(true),
    maxTtftP99Ms: z.number().min(0).nullable().default(null),
    maxEventLoopLagP99Ms: z.number().min(0).nullable().default(null),
    maxRssPerNodeMiB: z.number().min(0).nullable().default(null)
  }).prefault({})
})

export type Scenario = z.infer<typeof ScenarioSchema>

export class ScenarioError extends Error {
  readonly code = 'SCENARIO_INVALID'
}

/** Validates a parsed scenario; errors list each bad key with what was expected. */
export function parseScenario (raw: unknown, source: string): Scenario {
  const parsed = ScenarioSchema.safeParse(raw)
  if (!parsed.success) {
    const problems = parsed.error.issues.map(i => `  ${i.path.join('.') || '(top)'}: ${i.message}`).join('\n')
    throw new ScenarioError(`${source} is not a valid scenario:\n${problems}`)
  }
  return parsed.data
}

/** A scenario by name (simulations/scenarios/<name>.json) or by path. */
export async function loadScenario (nameOrPath: string): Promise<Scenario> {
  const path = nameOrPath.endsWith('.json') ? nameOrPath : join(packageRoot(), 'simulations', 'scenarios', `${nameOrPath}.json`)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ScenarioError(`no scenario ${JSON.stringify(nameOrPath)}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`)
  }
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (err) {
    throw new ScenarioError(`${path} is not JSON: ${(err as Error).message}`)
  }
  return parseScenario(raw, path)
}

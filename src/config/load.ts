/**
 * Resolves a node's configuration: flags > COCOON_* environment > config file
 * > defaults, validated once by NodeConfigSchema. Any bad value is a
 * ConfigError naming the key and the expected form.
 */
import { readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { ConfigError } from '../errors.js'
import { CAPACITY_INTERVAL_MS, DEFAULT_PCCS_URL, DEFAULT_TSM_PATH, MAX_CONNECTIONS_BY_ROLE } from '../p2p/constants.js'
import { NETWORK_PRESETS } from '../p2p/networks.js'
import { packageRoot } from '../package-info.js'
import { readNodeFile } from '../ops/node-file.js'
import { NodeConfigSchema } from './schema.js'
import type { NodeConfig } from './schema.js'
import type { NetworkId } from '../p2p/networks.js'
import { ROLE_NAMES } from './role-names.js'
import type { RoleName } from './role-names.js'
import type { z } from 'zod'

/** A partial, unvalidated configuration from one source. */
export type RawConfig = Record<string, unknown>

/** Fixed ports of a bootstrap node, so others can be told where it is. */
export const BOOTSTRAP_TCP_PORT = 4100
export const BOOTSTRAP_WS_PORT = 4101

export function cocoonHome (env: NodeJS.ProcessEnv = process.env): string {
  return env.COCOON_HOME != null && env.COCOON_HOME !== '' ? resolve(env.COCOON_HOME) : join(homedir(), '.cocoon')
}

/** One data dir per network and role, so several roles can run on one machine. */
export function defaultDataDir (network: string, role: string, env: NodeJS.ProcessEnv = process.env): string {
  return join(cocoonHome(env), network, role)
}

export function defaultListen (network: NetworkId, role: RoleName): string[] {
  const preset = NETWORK_PRESETS[network]
  const tcpPort = role === 'bootstrap' ? BOOTSTRAP_TCP_PORT : 0
  const wsPort = role === 'bootstrap' ? BOOTSTRAP_WS_PORT : 0
  const addrs = preset.listenHosts.flatMap(host => [`${host}/tcp/${tcpPort}`, `${host}/tcp/${wsPort}/ws`])
  if (preset.natTraversal && (role === 'worker' || role === 'proxy')) {
    // behind NAT, also be reachable through a relay reservation
    addrs.push('/p2p-circuit')
  }
  return addrs
}

/** Every key's default for a role on a network (before any source is applied). */
export function defaults (network: NetworkId, role: RoleName, env: NodeJS.ProcessEnv): RawConfig {
  return {
    role,
    network,
    dataDir: defaultDataDir(network, role, env),
    listen: defaultListen(network, role),
    announce: [],
    bootstrap: [],
    useDefaultBootstrap: true,
    logLevel: 'info',
    admin: { enabled: true, host: '127.0.0.1', port: 0 },
    dht: { addressFilter: 'auto' },
    maxConnections: MAX_CONNECTIONS_BY_ROLE[role],
    attestation: {
      provider: 'auto',
      tsmPath: DEFAULT_TSM_PATH,
      pccsUrl: DEFAULT_PCCS_URL,
      acceptSimulated: null,
      allowedMrtd: [],
      allowedImageHashes: []
    },
    worker: {
      models: [DEFAULT_MODEL],
      accelerators: 'auto',
      announceIntervalMs: CAPACITY_INTERVAL_MS,
      gossip: true,
      backend: 'llama',
      llama: { threads: 0, gpu: false },
      upstream: { url: null, apiKeyFile: null, healthIntervalMs: 5_000 },
      synthetic: { chunks: 50, chunkBytes: 128, intervalMs: 0, firstChunkDelayMs: 0 }
    },
    proxy: { maxJobs: 512, maxJobsPerClient: 64, queueDepth: 256, queueWaitMs: 30_000, models: [] },
    settlement: {
      enabled: false,
      chain: 'devnet',
      endpoint: null,
      apiKeyFile: null,
      mnemonicFile: null,
      deposit: 2_000_000_000,
      disputeWindowS: 86_400,
      minDisputeWindowS: 3_600,
      minDeposit: 100_000_000,
      creditWindow: 5_000_000,
      commissionBp: 1_000,
      required: true,
      paymentWaitMs: 5_000,
      settleWaitMs: 2_000,
      watchIntervalMs: 30_000,
      devnetFaucet: true
    },
    client: {
      api: { enabled: true, host: '127.0.0.1', port: DEFAULT_API_PORT },
      maxPricePromptPerM: 10_000_000_000,
      maxPriceCompletionPerM: 10_000_000_000,
      defaultMaxTokens: 512,
      requestTimeoutMs: 120_000,
      maxConcurrent: 64,
      queueDepth: 1_024,
      queueWaitMs: 60_000
    }
  }
}

/** Where the client's OpenAI-compatible API listens by default. */
export const DEFAULT_API_PORT = 8400

/** What a worker serves when its config names no model. */
export const DEFAULT_MODEL = {
  name: 'cocoon-synthetic',
  contextLength: 2048,
  pricePromptPerM: 20_000_000,
  priceCompletionPerM: 80_000_000,
  maxConcurrent: 4
}

const ENV_KEYS: Record<string, { key: string, kind: 'string' | 'list' | 'bool' | 'number' }> = {
  COCOON_ROLE: { key: 'role', kind: 'string' },
  COCOON_NETWORK: { key: 'network', kind: 'string' },
  COCOON_DATA_DIR: { key: 'dataDir', kind: 'string' },
  COCOON_LISTEN: { key: 'listen', kind: 'list' },
  COCOON_ANNOUNCE: { key: 'announce', kind: 'list' },
  COCOON_BOOTSTRAP: { key: 'bootstrap', kind: 'list' },
  COCOON_USE_DEFAULT_BOOTSTRAP: { key: 'useDefaultBootstrap', kind: 'bool' },
  COCOON_LOG_LEVEL: { key: 'logLevel', kind: 'string' },
  COCOON_ADMIN_ENABLED: { key: 'admin.enabled', kind: 'bool' },
  COCOON_ADMIN_HOST: { key: 'admin.host', kind: 'string' },
  COCOON_ADMIN_PORT: { key: 'admin.port', kind: 'number' },
  COCOON_DHT_ADDRESS_FILTER: { key: 'dht.addressFilter', kind: 'string' },
  COCOON_MAX_CONNECTIONS: { key: 'maxConnections', kind: 'number' },
  COCOON_ATTESTATION_PROVIDER: { key: 'attestation.provider', kind: 'string' },
  COCOON_TSM_PATH: { key: 'attestation.tsmPath', kind: 'string' },
  COCOON_PCCS_URL: { key: 'attestation.pccsUrl', kind: 'string' },
  COCOON_BACKEND: { key: 'worker.backend', kind: 'string' },
  COCOON_UPSTREAM_URL: { key: 'worker.upstream.url', kind: 'string' },
  COCOON_UPSTREAM_API_KEY_FILE: { key: 'worker.upstream.apiKeyFile', kind: 'string' },
  COCOON_API_PORT: { key: 'client.api.port', kind: 'number' },
  COCOON_SETTLEMENT: { key: 'settlement.enabled', kind: 'bool' },
  COCOON_CHAIN: { key: 'settlement.chain', kind: 'string' },
  COCOON_CHAIN_ENDPOINT: { key: 'settlement.endpoint', kind: 'string' },
  COCOON_MNEMONIC_FILE: { key: 'settlement.mnemonicFile', kind: 'string' }
}

/** Converts a string from the environment or a flag into the key's type; leaves bad input for the schema to report. */
export function coerce (value: string, kind: 'string' | 'list' | 'bool' | 'number'): unknown {
  switch (kind) {
    case 'list': return value.split(/[\s,]+/).filter(s => s !== '')
    case 'bool': return value === 'true' || value === '1' ? true : value === 'false' || value === '0' ? false : value
    case 'number': return /^-?\d+$/.test(value.trim()) ? Number(value) : value
    default: return value
  }
}

export function fromEnv (env: NodeJS.ProcessEnv): RawConfig {
  const raw: RawConfig = {}
  for (const [name, { key, kind }] of Object.entries(ENV_KEYS)) {
    const value = env[name]
    if (value != null && value !== '') setPath(raw, key, coerce(value, kind))
  }
  return raw
}

export async function fromFile (path: string): Promise<RawConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError('config', `cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)}); expected a JSON config file`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('config', `${path} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError('config', `${path} must hold a JSON object of config keys`)
  }
  return parsed as RawConfig
}

export interface ConfigSources {
  /** Values from command-line flags (highest precedence). */
  flags?: RawConfig
  env?: NodeJS.ProcessEnv
  /** Path of a JSON config file; COCOON_CONFIG when absent. */
  configPath?: string
}

export async function loadConfig (sources: ConfigSources = {}): Promise<NodeConfig> {
  const env = sources.env ?? process.env
  const flags = sources.flags ?? {}
  const configPath = sources.configPath ?? (env.COCOON_CONFIG != null && env.COCOON_CONFIG !== '' ? env.COCOON_CONFIG : undefined)
  const file = configPath != null ? await fromFile(configPath) : {}
  const fromEnvironment = fromEnv(env)

  // role and network choose the defaults, so resolve them first
  const layered = merge(merge(file, fromEnvironment), flags)
  const role = (layered.role ?? undefined) as RoleName | undefined
  if (role == null) {
    throw new ConfigError('role', 'missing; expected --role bootstrap|worker|proxy|client (or COCOON_ROLE, or "role" in the config file)')
  }
  const network = (layered.network ?? 'local') as NetworkId
  // an invalid role or network still needs some defaults; the schema then reports the bad value
  const base = defaults(NETWORK_PRESETS[network] != null ? network : 'local', ROLE_NAMES.includes(role) ? role : 'client', env)
  const config = validate(merge(base, layered))

  const discovered = config.useDefaultBootstrap ? await defaultBootstrap(config, env) : []
  const bootstrap = [...new Set([...config.bootstrap, ...discovered])]
  return { ...config, dataDir: resolve(config.dataDir), bootstrap }
}

export function validate (raw: RawConfig): NodeConfig {
  const result = NodeConfigSchema.safeParse(raw)
  if (!result.success) throw toConfigError(result.error)
  const config = result.data
  // the network's price floor: proxies reject announcements under it
  const floor = NETWORK_PRESETS[config.network].minPriceCompletionPerM
  for (const [i, m] of config.worker.models.entries()) {
    if (BigInt(m.priceCompletionPerM) < floor) {
      throw new ConfigError(`worker.models[${i}].priceCompletionPerM`, `${m.priceCompletionPerM} is under the ${config.network} network's floor of ${floor} nanoTON per 1M completion tokens`)
    }
  }
  return config
}

/** Validates one top-level key on its own, with the same message the full schema gives. */
export function checkValue<K extends keyof NodeConfig> (key: K, value: unknown): NodeConfig[K] {
  const result = NodeConfigSchema.shape[key].safeParse(value)
  if (result.success) return result.data as NodeConfig[K]
  throw new ConfigError(key, result.error.issues[0].message)
}

function toConfigError (error: z.ZodError): ConfigError {
  const { issue, path } = innermost(first(error.issues), [])
  const key = path.map((p, i) => typeof p === 'number' ? `[${p}]` : (i === 0 ? String(p) : `.${String(p)}`)).join('')
  if (issue.code === 'unrecognized_keys') {
    const where = key === '' ? '' : `${key}.`
    return new ConfigError(`${where}${issue.keys[0]}`, 'unknown key; see the configuration reference in README.md')
  }
  return new ConfigError(key === '' ? 'config' : key, issue.message)
}

type Issue = z.core.$ZodIssue

/** The issue to report: a misspelt key explains the rest (the field it should have been is then "missing"). */
function first (issues: Issue[]): Issue {
  return issues.find(i => i.code === 'unrecognized_keys') ?? issues[0]
}

/**
 * For a value that matched none of a union's forms, the problem inside the
 * form it came closest to (the deepest one), so `worker.accelerators[1].memoryTotalMiB`
 * is named rather than the whole union; the union's own message when no form got past the type.
 */
function innermost (issue: Issue, prefix: PropertyKey[]): { issue: Issue, path: PropertyKey[] } {
  const path = [...prefix, ...issue.path]
  if (issue.code !== 'invalid_union') return { issue, path }
  const candidates = issue.errors.map(first).filter(i => i != null && !(i.path.length === 0 && (i.code === 'invalid_type' || i.code === 'invalid_value')))
  if (candidates.length === 0) return { issue, path }
  const closest = candidates.reduce((a, b) => (b.path.length > a.path.length ? b : a))
  return innermost(closest, path)
}

/** Bootstrap peers the node uses without being told: the network's list and, locally, the bootstrap node on this machine. */
async function defaultBootstrap (config: NodeConfig, env: NodeJS.ProcessEnv): Promise<string[]> {
  const peers: string[] = []
  try {
    const list = JSON.parse(await readFile(join(packageRoot(), 'networks', `${config.network}.json`), 'utf8')) as { bootstrap?: string[] }
    peers.push(...(list.bootstrap ?? []))
  } catch {}
  if (config.network === 'local' && config.role !== 'bootstrap') {
    const running = await readNodeFile(defaultDataDir('local', 'bootstrap', env))
    if (running != null) peers.push(...running.addrs.filter(a => !a.includes('/ws/')))
  }
  for (const addr of peers) {
    const checked = NodeConfigSchema.shape.bootstrap.safeParse([addr])
    if (!checked.success) {
      throw new ConfigError('bootstrap', `default peer ${addr} (networks/${config.network}.json or the local bootstrap node): ${checked.error.issues[0].message}`)
    }
  }
  return peers
}

function isPlainObject (value: unknown): value is RawConfig {
  return value != null && typeof value === 'object' && !Array.isArray(value)
}

/** Deep merge for nested objects; arrays and scalars from `over` replace. */
export function merge (base: RawConfig, over: RawConfig): RawConfig {
  const out: RawConfig = { ...base }
  for (const [key, value] of Object.entries(over)) {
    if (value === undefined) continue
    out[key] = isPlainObject(value) && isPlainObject(base[key]) ? merge(base[key], value) : value
  }
  return out
}

export function setPath (target: RawConfig, path: string, value: unknown): void {
  const parts = path.split('.')
  let cursor = target
  for (const part of parts.slice(0, -1)) {
    if (!isPlainObject(cursor[part])) cursor[part] = {}
    cursor = cursor[part] as RawConfig
  }
  cursor[parts[parts.length - 1]] = value
}

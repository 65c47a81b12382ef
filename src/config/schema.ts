/**
 * The one schema every node configuration passes through, whatever its source
 * (flags, COCOON_* environment, config file, defaults). Each field's error
 * message names the expected form, so a bad value gives a one-line answer.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { ROLE_NAMES } from './role-names.js'
import { NETWORK_IDS } from '../p2p/networks.js'
import { CAPACITY_MAX_BASE_INTERVAL_MS, MODEL_NAME_PATTERN } from '../p2p/constants.js'
import { LOG_LEVELS } from '../ops/console-log.js'


function isMultiaddr (value: string): boolean {
  try {
    multiaddr(value)
    return value.startsWith('/')
  } catch {
    return false
  }
}

function hasPeerId (value: string): boolean {
  try {
    return multiaddr(value).getComponents().some(c => c.name === 'p2p')
  } catch {
    return false
  }
}

const listenAddr = z.string().refine(isMultiaddr, {
  error: (issue) => `expected a multiaddr such as /ip4/127.0.0.1/tcp/4100 or /ip4/0.0.0.0/tcp/0/ws (got ${JSON.stringify(issue.input)})`
})

const peerAddr = z.string().refine(v => isMultiaddr(v) && hasPeerId(v), {
  error: (issue) => `expected a multiaddr that ends in /p2p/<peer-id>, such as /ip4/127.0.0.1/tcp/4100/p2p/12D3KooW... (got ${JSON.stringify(issue.input)})`
})

const LOOPBACK_HOSTS = ['127.0.0.1', '::1', 'localhost']

function wholeNumber (what: string, min: number, max: number): z.ZodNumber {
  const error = `expected ${what}, a whole number from ${min} to ${max}`
  return z.number({ error }).int({ error }).min(min, { error }).max(max, { error })
}

/** Upper bounds a proxy also enforces on announcements (1M TON per 1M tokens is absurd, not malicious-proof). */
export const MAX_PRICE_NANOTON_PER_M = 1_000_000_000_000_000
export const MAX_CONTEXT_LENGTH = 10_000_000
export const MAX_CONCURRENT_JOBS = 1024
export const MAX_MODELS_PER_WORKER = 16

const modelOffer = z.strictObject({
  name: z.string().regex(MODEL_NAME_PATTERN, {
    error: (issue) => `expected a model name of letters, digits and . _ : / + - (at most 128), such as llama-3.1-8b-instruct (got ${JSON.stringify(issue.input)})`
  }),
  path: z.string().min(1, { error: 'expected the path of the weights file' }).optional(),
  contextLength: wholeNumber('a context length in tokens', 1, MAX_CONTEXT_LENGTH),
  pricePromptPerM: wholeNumber('a price in nanoTON per 1M prompt tokens', 0, MAX_PRICE_NANOTON_PER_M),
  priceCompletionPerM: wholeNumber('a price in nanoTON per 1M completion tokens', 0, MAX_PRICE_NANOTON_PER_M),
  maxConcurrent: wholeNumber('the most jobs run at once', 1, MAX_CONCURRENT_JOBS)
})

const acceleratorOverride = z.strictObject({
  kind: z.enum(['gpu', 'cpu'], { error: (issue) => `expected gpu or cpu (got ${JSON.stringify(issue.input)})` }).default('gpu'),
  index: wholeNumber('a device index', 0, 1023).optional(),
  name: z.string({ error: 'expected the accelerator name' }).trim().min(1, { error: 'expected the accelerator name' }).max(128),
  uuid: z.string().max(128).default(''),
  memoryTotalMiB: wholeNumber('memory in MiB', 1, 16_777_216),
  memoryUsedMiB: wholeNumber('memory in MiB', 0, 16_777_216).default(0),
  utilizationPct: z.number({ error: 'expected a percentage from 0 to 100' }).min(0, { error: 'expected a percentage from 0 to 100' }).max(100, { error: 'expected a percentage from 0 to 100' }).default(0),
  driver: z.string().max(64).default(''),
  computeCapability: z.string().max(16).default('')
}).refine(a => a.memoryUsedMiB <= a.memoryTotalMiB, {
  path: ['memoryUsedMiB'],
  error: 'expected at most memoryTotalMiB'
})

/** Explicit indices must not repeat (the position stands in for a missing one). */
const acceleratorList = z.array(acceleratorOverride).min(1, { error: 'expected at least one accelerator, or cpu' }).max(16, { error: 'expected at most 16 accelerators' }).refine(list => {
  const indices = list.map((a, i) => a.index ?? i)
  return new Set(indices).size === indices.length
}, { error: 'expected each accelerator index once' })

const hexOf = (bytes: number, what: string): z.ZodString => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`), {
  error: (issue) => `expected ${what} as ${bytes * 2} lower-case hex digits (got ${JSON.stringify(issue.input)})`
})

export const NodeConfigSchema = z.strictObject({
  role: z.enum(ROLE_NAMES, { error: (issue) => `expected one of ${ROLE_NAMES.join(', ')} (got ${JSON.stringify(issue.input)})` }),
  network: z.enum(NETWORK_IDS, { error: (issue) => `expected one of ${NETWORK_IDS.join(', ')} (got ${JSON.stringify(issue.input)})` }),
  dataDir: z.string({ error: 'expected a directory path' }).min(1, { error: 'expected a directory path' }),
  listen: z.array(listenAddr, { error: 'expected a list of multiaddrs' }),
  announce: z.array(listenAddr, { error: 'expected a list of multiaddrs' }),
  bootstrap: z.array(peerAddr, { error: 'expected a list of multiaddrs ending in /p2p/<peer-id>' }),
  useDefaultBootstrap: z.boolean({ error: 'expected true or false' }),
  logLevel: z.enum(LOG_LEVELS, { error: (issue) => `expected one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(issue.input)})` }),
  admin: z.strictObject({
    enabled: z.boolean({ error: 'expected true or false' }),
    host: z.string().refine(h => LOOPBACK_HOSTS.includes(h), {
      error: (issue) => `expected a loopback host (${LOOPBACK_HOSTS.join(', ')}); the admin endpoint is never exposed (got ${JSON.stringify(issue.input)})`
    }),
    port: z.number({ error: 'expected a port number 0-65535 (0 picks a free port)' })
      .int({ error: 'expected a port number 0-65535 (0 picks a free port)' })
      .min(0, { error: 'expected a port number 0-65535 (0 picks a free port)' })
      .max(65535, { error: 'expected a port number 0-65535 (0 picks a free port)' })
  }),
  dht: z.strictObject({
    addressFilter: z.enum(['auto', 'public', 'all'], {
      error: (issue) => `expected auto, public or all (got ${JSON.stringify(issue.input)})`
    })
  }),
  maxConnections: z.number({ error: 'expected a whole number of connections, at least 8' })
    .int({ error: 'expected a whole number of connections, at least 8' })
    .min(8, { error: 'expected a whole number of connections, at least 8' }),
  attestation: z.strictObject({
    /** auto: tdx where the kernel offers configfs-tsm, else simulated. */
    provider: z.enum(['auto', 'tdx', 'simulated'], { error: (issue) => `expected auto, tdx or simulated (got ${JSON.stringify(issue.input)})` }),
    tsmPath: z.string().min(1, { error: 'expected the configfs-tsm report directory' }),
    pccsUrl: z.url({ error: (issue) => `expected the URL of a PCCS, such as https://pccs.example/sgx/certification/v4/ (got ${JSON.stringify(issue.input)})` }),
    /** Policy: null keeps the network's default (local yes, public no). */
    acceptSimulated: z.boolean({ error: 'expected true, false or null' }).nullable(),
    allowedMrtd: z.array(hexOf(48, 'an MRTD')),
    allowedImageHashes: z.array(hexOf(32, 'an image hash'))
  }),
  worker: z.strictObject({
    models: z.array(modelOffer).max(MAX_MODELS_PER_WORKER, { error: `expected at most ${MAX_MODELS_PER_WORKER} models` }),
    /** auto: nvidia-smi, else the CPU; or 'cpu'; or an explicit list. */
    accelerators: z.union([z.enum(['auto', 'cpu']), acceleratorList], {
      error: 'expected auto, cpu, or a list of { name, memoryTotalMiB, ... }'
    }),
    announceIntervalMs: wholeNumber('an interval in ms', 1_000, CAPACITY_MAX_BASE_INTERVAL_MS),
    /** false: be found through the DHT and /cocoon/attest only, never announced on gossip. */
    gossip: z.boolean({ error: 'expected true or false' }),
    /** What computes completions: embedded llama.cpp, an upstream OpenAI-compatible server, or the fixed-output test backend. */
    backend: z.enum(['llama', 'openai', 'synthetic'], { error: (issue) => `expected llama, openai or synthetic (got ${JSON.stringify(issue.input)})` }),
    llama: z.strictObject({
      /** CPU threads; 0 = one per free core. */
      threads: wholeNumber('a number of threads (0 = one per free core)', 0, 256),
      gpu: z.boolean({ error: 'expected true or false' })
    }),
    upstream: z.strictObject({
      /** Base URL of the OpenAI-compatible API, including /v1. */
      url: z.url({ error: (issue) => `expected the base URL of an OpenAI-compatible API, such as http://127.0.0.1:8000/v1 (got ${JSON.stringify(issue.input)})` }).nullable(),
      /** A file holding the upstream's API key (never put the key itself in config). */
      apiKeyFile: z.string().min(1, { error: 'expected the path of a file holding the API key' }).nullable(),
      healthIntervalMs: wholeNumber('an interval in ms', 100, 600_000)
    }),
    synthetic: z.strictObject({
      chunks: wholeNumber('chunks per job', 1, 100_000),
      chunkBytes: wholeNumber('bytes per chunk', 1, 65_536),
      intervalMs: wholeNumber('ms between chunks', 0, 60_000),
      firstChunkDelayMs: wholeNumber('ms before the first chunk', 0, 600_000)
    })
  }),
  proxy: z.strictObject({
    /** Jobs in flight through this proxy at once; more are refused as overloaded. */
    maxJobs: wholeNumber('a number of jobs', 1, 100_000),
    /** Jobs in flight per client peer (waiting in the queue included). */
    maxJobsPerClient: wholeNumber('a number of jobs', 1, 100_000),
    /** Jobs that may wait for a free worker when every worker is busy; more are refused (429 at the client). */
    queueDepth: wholeNumber('a number of jobs', 0, 100_000),
    /** The longest a job waits for a free worker, ms. */
    queueWaitMs: wholeNumber('a time in ms', 0, 600_000),
    /**
     * Models this proxy routes: it hears only their capacity shards. Empty:
     * every model (every shard).
     */
    models: z.array(z.string().regex(MODEL_NAME_PATTERN, { error: 'expected a model name (letters, digits, . _ : / + -)' }), { error: 'expected a list of model names' }).max(256)
  }),
  settlement: z.strictObject({
    /** Pay and get paid over payment channels; off, jobs run unpaid. */
    enabled: z.boolean({ error: 'expected true or false' }),
    chain: z.enum(['devnet', 'testnet', 'mainnet'], { error: (issue) => `expected devnet, testnet or mainnet (got ${JSON.stringify(issue.input)})` }),
    /** devnet: a `cocoon chain` server URL (null: the devnet in the data dir); testnet/mainnet: a toncenter v2 endpoint (null: toncenter's). */
    endpoint: z.url({ error: (issue) => `expected an http(s) URL, such as http://127.0.0.1:8500 (got ${JSON.stringify(issue.input)})` }).nullable(),
    /** A file holding the toncenter API key (never the key itself in config). */
    apiKeyFile: z.string().min(1, { error: 'expected the path of a file holding the API key' }).nullable(),
    /** The wallet's 24-word mnemonic file; required on testnet and mainnet, created in the data dir on a devnet. */
    mnemonicFile: z.string().min(1, { error: 'expected the path of a mnemonic file' }).nullable(),
    /** As payer: what a new channel is funded with, nanoTON. */
    deposit: wholeNumber('an amount in nanoTON', 20_000_000, Number.MAX_SAFE_INTEGER),
    /** As payer: the dispute window of channels this node opens, seconds. */
    disputeWindowS: wholeNumber('a number of seconds', 60, 30 * 24 * 3600),
    /** As payee: the least dispute window and deposit accepted. */
    minDisputeWindowS: wholeNumber('a number of seconds', 60, 30 * 24 * 3600),
    minDeposit: wholeNumber('an amount in nanoTON', 0, Number.MAX_SAFE_INTEGER),
    /** As payee: nanoTON delivered ahead of payment at most (what a payer that stops paying can take). */
    creditWindow: wholeNumber('an amount in nanoTON', 0, Number.MAX_SAFE_INTEGER),
    /** As proxy: added to workers' prices for clients, basis points (1000 = 10%). */
    commissionBp: wholeNumber('basis points (1000 = 10%)', 0, 100_000),
    /** As payee: refuse jobs that name no channel (default true; false only for a private network that works for free). */
    required: z.boolean({ error: 'expected true or false' }),
    /** How long a payee holds a frame for the payment that lets it out, ms. */
    paymentWaitMs: wholeNumber('a time in ms', 10, 600_000),
    /** After a job's final result: how long a payee waits for the payment that settles it, ms. */
    settleWaitMs: wholeNumber('a time in ms', 10, 600_000),
    /** How often open and closing channels are checked on chain (challenges, finished closes), ms. */
    watchIntervalMs: wholeNumber('an interval in ms', 100, 3_600_000),
    /** devnet only: top the wallet up from the devnet faucet when it runs low. */
    devnetFaucet: z.boolean({ error: 'expected true or false' })
  }),
  client: z.strictObject({
    api: z.strictObject({
      enabled: z.boolean({ error: 'expected true or false' }),
      host: z.string().refine(h => LOOPBACK_HOSTS.includes(h), {
        error: (issue) => `expected a loopback host (${LOOPBACK_HOSTS.join(', ')}); put a TLS reverse proxy in front to expose the API (got ${JSON.stringify(issue.input)})`
      }),
      port: wholeNumber('a port number (0 picks a free port)', 0, 65535)
    }),
    /** Highest price accepted, nanoTON per 1M tokens. */
    maxPricePromptPerM: wholeNumber('a price in nanoTON per 1M prompt tokens', 0, MAX_PRICE_NANOTON_PER_M),
    maxPriceCompletionPerM: wholeNumber('a price in nanoTON per 1M completion tokens', 0, MAX_PRICE_NANOTON_PER_M),
    /** max_tokens when a request names none. */
    defaultMaxTokens: wholeNumber('a number of tokens', 1, 1_000_000),
    /** Whole-job deadline (first byte to last chunk). */
    requestTimeoutMs: wholeNumber('a timeout in ms', 1_000, 3_600_000),
    /** Requests sent into the swarm at once; more wait in line. */
    maxConcurrent: wholeNumber('a number of requests', 1, 100_000),
    /** Requests that may wait in line; more are refused (429). */
    queueDepth: wholeNumber('a number of requests', 0, 1_000_000),
    /** The longest a request waits in line, ms. */
    queueWaitMs: wholeNumber('a time in ms', 0, 3_600_000)
  })
})

export type NodeConfig = z.infer<typeof NodeConfigSchema>

/** Names of the top-level and nested keys, for "did you mean" style errors. */
export const CONFIG_KEYS = Object.keys(NodeConfigSchema.shape)

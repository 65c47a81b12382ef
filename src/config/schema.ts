/**
 * The one schema every node configuration passes through, whatever its source
 * (flags, COCOON_* environment, config file, defaults). Each field's error
 * message names the expected form, so a bad value gives a one-line answer.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { ROLE_NAMES } from '../roles/names.js'
import { NETWORK_IDS } from '../p2p/networks.js'

export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'] as const
export type LogLevel = typeof LOG_LEVELS[number]

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
    .min(8, { error: 'expected a whole number of connections, at least 8' })
})

export type NodeConfig = z.infer<typeof NodeConfigSchema>

/** Names of the top-level and nested keys, for "did you mean" style errors. */
export const CONFIG_KEYS = Object.keys(NodeConfigSchema.shape)

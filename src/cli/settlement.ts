/**
 * `cocoon wallet`, `cocoon channel` and `cocoon chain`. Wallet and channel
 * commands act through the running node's admin endpoint (with the token
 * from its data dir), like a wallet CLI talking to its daemon: the node holds
 * the keys, the store and the connections. `cocoon chain` serves a devnet to
 * the nodes of several processes.
 */
import { parseArgs } from 'node:util'
import { join } from 'node:path'
import { ConfigError, NodeNotRunningError } from '../errors.js'
import { cocoonHome } from '../config/load.js'
import { ADMIN_TOKEN_HEADER } from '../ops/admin-server.js'
import { readAdminToken, readNodeFile } from '../ops/node-file.js'
import { loadWalletKey, serveDevnet, walletContract } from '../settlement/chain/index.js'
import { readSecretFile } from '../ops/secret-file.js'
import { fromNano, toNano } from '@ton/core'
import { isLoopbackName } from '../ops/loopback-host.js'
import { resolveDataDir } from './id.js'
import type { CliIO } from './io.js'
import type { SettlementStatus } from '../settlement/node-settlement.js'

const TARGET_OPTIONS = {
  role: { type: 'string' },
  network: { type: 'string' },
  'data-dir': { type: 'string' },
  json: { type: 'boolean' }
} as const

/** Operations that touch the chain wait for it: allow them a while. */
const ACTION_TIMEOUT_MS = 120_000

interface Target { admin: string, token: string | undefined }

async function target (values: { role?: string, network?: string, 'data-dir'?: string }, env: NodeJS.ProcessEnv): Promise<Target> {
  const dataDir = resolveDataDir(values, env)
  const file = await readNodeFile(dataDir)
  if (file?.admin == null) throw new NodeNotRunningError(`no running node with an admin endpoint in ${dataDir}; start it with cocoon node --role <role> --settlement`)
  return { admin: file.admin, token: await readAdminToken(dataDir) }
}

async function call (t: Target, method: 'GET' | 'POST', path: string, body?: Record<string, unknown>): Promise<unknown> {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (method === 'POST') {
    if (t.token == null) throw new ConfigError('data-dir', 'the node has no admin.token file; run this as the user that runs the node')
    headers[ADMIN_TOKEN_HEADER] = t.token
  }
  let res: Response
  try {
    res = await fetch(`${t.admin}${path}`, { method, headers, body: body == null ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(ACTION_TIMEOUT_MS) })
  } catch (err) {
    throw new NodeNotRunningError(`the node's admin endpoint ${t.admin} does not answer (${(err as Error).message})`, { cause: err })
  }
  const json = await res.json().catch(() => ({})) as { error?: { message: string } }
  if (res.status === 404 && path.startsWith('/channels') && method === 'GET') throw new ConfigError('settlement.enabled', 'the node runs without settlement; start it with --settlement')
  if (!res.ok) throw new NodeNotRunningError(`${method} ${path}: ${json.error?.message ?? `HTTP ${res.status}`}`)
  return json
}

/** "1.5" TON or "1500000000n" nanoTON → nanoTON, as a decimal string. */
function parseAmount (text: string | undefined, what: string): string {
  if (text == null) throw new ConfigError(what, 'missing; expected an amount in TON such as 1.5 (or nanoTON ending in n, such as 1500000000n)')
  if (/^\d+n$/.test(text)) return text.slice(0, -1)
  if (!/^\d+(?:\.\d{1,9})?$/.test(text)) throw new ConfigError(what, `${JSON.stringify(text)} is not an amount; expected TON such as 1.5, or nanoTON such as 1500000000n`)
  return toNano(text).toString()
}

export async function runWallet (args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { ...TARGET_OPTIONS, 'mnemonic-file': { type: 'string' }, chain: { type: 'string' } }, strict: true, allowPositionals: true })
  const [sub = 'show', amount] = positionals
  if (sub === 'create') return await createWallet(values['mnemonic-file'], values.chain ?? 'testnet', values.json === true, io)
  const t = await target(values, io.env)
  let wallet: SettlementStatus['wallet']
  if (sub === 'show') wallet = await call(t, 'GET', '/wallet') as SettlementStatus['wallet']
  else if (sub === 'faucet') wallet = await call(t, 'POST', '/wallet/faucet', { amount: parseAmount(amount ?? '10', 'amount') }) as SettlementStatus['wallet']
  else throw new ConfigError('wallet', `unknown subcommand ${JSON.stringify(sub)}; expected show, faucet [amount] or create --mnemonic-file <file>`)
  if (values.json === true) io.out(JSON.stringify(wallet, null, 2))
  else if ('error' in wallet) io.out(`wallet: ${wallet.error}`)
  else io.out(`wallet ${wallet.address}: ${fromNano(BigInt(wallet.balance))} TON${wallet.deployed ? '' : ' (not deployed yet: its first payment deploys it)'}`)
  return 0
}

export async function runChannel (args: string[], io: CliIO): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { ...TARGET_OPTIONS, force: { type: 'boolean' } }, strict: true, allowPositionals: true })
  const [sub = 'list', first, second] = positionals
  const t = await target(values, io.env)
  const print = (v: unknown): void => { io.out(JSON.stringify(v, null, 2)) }
  switch (sub) {
    case 'list': {
      const channels = await call(t, 'GET', '/channels') as SettlementStatus['channels']
      if (values.json === true) print(channels)
      else io.out(channels.length === 0 ? 'no channels' : channels.map(formatChannel).join('\n'))
      return 0
    }
    case 'open': {
      if (first == null) throw new ConfigError('peer', 'missing; expected cocoon channel open <peer-id>')
      const res = await call(t, 'POST', '/channels/open', { peer: first }) as { channel: string, deposited: string }
      if (values.json === true) print(res)
      else io.out(`channel ${res.channel} open to ${first} with ${fromNano(BigInt(res.deposited))} TON`)
      return 0
    }
    case 'topup': {
      if (first == null) throw new ConfigError('channel', 'missing; expected cocoon channel topup <channel> <amount>')
      const res = await call(t, 'POST', '/channels/topup', { channel: first, amount: parseAmount(second, 'amount') }) as { channel: string, deposited: string }
      if (values.json === true) print(res)
      else io.out(`channel ${res.channel} now holds ${fromNano(BigInt(res.deposited))} TON in all`)
      return 0
    }
    case 'pay': {
      if (first == null) throw new ConfigError('channel', 'missing; expected cocoon channel pay <channel> <amount>')
      const res = await call(t, 'POST', '/channels/pay', { channel: first, amount: parseAmount(second, 'amount') }) as { channel: string, seqno: string, cumulative: string, countersigned: boolean }
      if (values.json === true) print(res)
      else io.out(`channel ${res.channel}: state ${res.seqno} pays ${fromNano(BigInt(res.cumulative))} TON in all${res.countersigned ? ', countersigned' : ''}`)
      return 0
    }
    case 'close': {
      if (first == null) throw new ConfigError('channel', 'missing; expected cocoon channel close <channel> [--force]')
      const res = await call(t, 'POST', '/channels/close', { channel: first, force: values.force === true }) as { channel: string, status: string }
      if (values.json === true) print(res)
      else io.out(res.status === 'closed' ? `channel ${res.channel} closed and paid out` : `channel ${res.channel} closing alone: it pays out when its dispute window is over`)
      return 0
    }
    default:
      throw new ConfigError('channel', `unknown subcommand ${JSON.stringify(sub)}; expected list, open, topup, pay or close`)
  }
}

/**
 * `cocoon wallet create`: writes new words to a mnemonic file (mode 0600)
 * for a testnet or mainnet node, which never makes one up itself, and prints
 * the wallet's address to fund. The words are never printed.
 */
async function createWallet (path: string | undefined, chain: string, json: boolean, io: CliIO): Promise<number> {
  if (path == null) throw new ConfigError('mnemonic-file', 'missing; expected cocoon wallet create --mnemonic-file <file> [--chain testnet|mainnet|devnet]')
  if (chain !== 'testnet' && chain !== 'mainnet' && chain !== 'devnet') throw new ConfigError('chain', `expected devnet, testnet or mainnet (got ${JSON.stringify(chain)})`)
  const existed = await readSecretFile(path).then(b => b != null, () => true)
  if (existed) throw new ConfigError('mnemonic-file', `${path} already exists; a wallet file is never overwritten`)
  const keys = await loadWalletKey(path, { create: true, key: 'mnemonic-file' })
  const address = walletContract(chain, keys.publicKey).address
  const shown = address.toString({ bounceable: false, testOnly: chain !== 'mainnet' })
  if (json) io.out(JSON.stringify({ chain, mnemonicFile: path, address: address.toRawString(), friendly: shown }, null, 2))
  else {
    io.out(`created ${path} (mode 0600; keep it safe: it is the wallet)`)
    io.out(`${chain} wallet ${shown} (${address.toRawString()}); fund it, then run nodes with --settlement --chain ${chain} --mnemonic-file ${path}`)
  }
  return 0
}

function formatChannel (c: SettlementStatus['channels'][number]): string {
  const owed = c.cumulative == null ? '0' : fromNano(BigInt(c.cumulative))
  return `${c.address}  ${c.side === 'payer' ? 'pays' : 'paid by'} ${c.peer}  ${c.status}  deposit ${fromNano(BigInt(c.deposited))} TON  owed ${owed} TON (seqno ${c.seqno ?? 0}${c.countersigned != null && c.countersigned !== c.cumulative ? `, countersigned ${fromNano(BigInt(c.countersigned))}` : ''})`
}

/** `cocoon chain`: one devnet served on loopback for nodes in several processes. */
export async function runChain (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: { 'data-dir': { type: 'string' }, port: { type: 'string' }, host: { type: 'string' } }, strict: true })
  const port = values.port == null ? 8500 : Number(values.port)
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError('port', `expected a port number 0-65535 (got ${JSON.stringify(values.port)})`)
  const host = values.host ?? '127.0.0.1'
  if (!isLoopbackName(host)) throw new ConfigError('host', 'the devnet server listens on loopback only')
  const dataDir = values['data-dir'] ?? join(cocoonHome(io.env), 'devnet-chain')
  const server = await serveDevnet({ dataDir, host, port })
  io.err(`devnet chain in ${dataDir} served on ${server.url}`)
  io.err(`run nodes with --settlement --chain-endpoint ${server.url}`)
  await new Promise<void>(resolve => {
    const stop = (): void => { server.close().then(resolve, resolve) }
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
  })
  return 0
}

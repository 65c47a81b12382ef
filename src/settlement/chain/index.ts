/**
 * The chain a node settles on, chosen from its settings:
 *
 * | chain   | endpoint          | adapter                                      | wallet mnemonic                          |
 * |---------|-------------------|----------------------------------------------|------------------------------------------|
 * | devnet  | none              | DevnetAdapter, in-process, `<dataDir>`       | default `<dataDir>/wallet.mnemonic`, created |
 * | devnet  | `cocoon chain` URL| TonClientAdapter against the devnet server   | default `<dataDir>/wallet.mnemonic`, created |
 * | testnet | default toncenter | TonClientAdapter                             | `mnemonicFile` required, must exist      |
 * | mainnet | default toncenter | TonClientAdapter                             | `mnemonicFile` required, must exist      |
 *
 * Bad settings are ConfigErrors naming the key (`chain.name`,
 * `chain.endpoint`, `chain.apiKey`, `chain.mnemonicFile`, `chain.dataDir`,
 * `chain.timeoutMs`).
 */
import { join } from 'node:path'
import { ChainError, ConfigError } from '../../errors.js'
import { describeError } from './adapter.js'
import { DevnetAdapter } from './devnet-adapter.js'
import { TonClientAdapter, TONCENTER_ENDPOINTS } from './ton-client.js'
import { loadWalletKey, MNEMONIC_FILE, MNEMONIC_WORDS } from './wallet.js'
import type { ChainName } from '../types.js'
import type { WaitOptions } from './adapter.js'

export { FEE_TABLE, WalletChainAdapter, checkChannelTransaction, describeExitCode } from './adapter.js'
export type { ChainAccess, ChainOperation, WaitOptions } from './adapter.js'
export { Devnet, DEVNET_CHAIN_FILE, DEVNET_FAUCET_MAX } from './devnet.js'
export { DevnetAdapter, devnetAccess } from './devnet-adapter.js'
export { DevnetServerClient, serveDevnet, startDevnetServer } from './devnet-server.js'
export type { DevnetServer, DevnetServerOptions } from './devnet-server.js'
export { TonClientAdapter, TONCENTER_ENDPOINTS } from './ton-client.js'
export { loadWalletKey, MNEMONIC_FILE, walletContract } from './wallet.js'

export interface ChainSettings {
  chain: ChainName
  /** the node's data dir: the in-process devnet and a devnet wallet live here */
  dataDir: string
  /**
   * devnet: the URL of a `cocoon chain` server (its base URL or
   * …/api/v2/jsonRPC); absent, the in-process devnet. testnet, mainnet: a
   * toncenter v2 JSON-RPC endpoint; absent, toncenter's (https only, but
   * for loopback).
   */
  endpoint?: string
  /** toncenter API key (X-API-Key) */
  apiKey?: string
  /** the wallet's mnemonic file; see the table above */
  mnemonicFile?: string
  /** bound on one operation (send to applied), ms */
  timeoutMs?: number
  pollIntervalMs?: number
  httpTimeoutMs?: number
}

const CHAINS: readonly ChainName[] = ['devnet', 'testnet', 'mainnet']

/** The adapter for `settings` (see the file comment); ConfigError for bad settings. */
export async function createChainAdapter (settings: ChainSettings): Promise<DevnetAdapter | TonClientAdapter> {
  const chain = settings.chain
  if (!CHAINS.includes(chain)) throw new ConfigError('chain.name', `unknown chain ${JSON.stringify(chain)}; expected devnet, testnet or mainnet`)
  const wait = waitOptions(settings)
  if (settings.apiKey !== undefined && (typeof settings.apiKey !== 'string' || !/^\S+$/.test(settings.apiKey))) {
    throw new ConfigError('chain.apiKey', 'must be a non-empty string without spaces')
  }
  if (chain === 'devnet') {
    if (typeof settings.dataDir !== 'string' || settings.dataDir === '') throw new ConfigError('chain.dataDir', 'the devnet needs a data dir')
    const mnemonicFile = settings.mnemonicFile ?? join(settings.dataDir, MNEMONIC_FILE)
    if (settings.endpoint == null) return await DevnetAdapter.open({ dataDir: settings.dataDir, mnemonicFile, wait })
    const endpoint = jsonRpcEndpoint(parseEndpoint(settings.endpoint, false))
    const keys = await loadWalletKey(mnemonicFile, { create: true })
    const adapter = new TonClientAdapter({ chain, endpoint, apiKey: settings.apiKey, keys, httpTimeoutMs: settings.httpTimeoutMs ?? 5_000, wait: { timeoutMs: 10_000, pollIntervalMs: 25, ...wait } })
    try {
      await adapter.client.getMasterchainInfo()
    } catch (err) {
      throw new ChainError(`devnet server ${endpoint} does not answer (${describeError(err)}); is \`cocoon chain\` running?`, { cause: err })
    }
    return adapter
  }
  if (settings.mnemonicFile == null || settings.mnemonicFile === '') {
    throw new ConfigError('chain.mnemonicFile', `required on ${chain}: the path of the wallet's ${MNEMONIC_WORDS}-word mnemonic file (mode 0600); a ${chain} wallet is never created`)
  }
  const endpoint = settings.endpoint == null ? TONCENTER_ENDPOINTS[chain] : jsonRpcEndpoint(parseEndpoint(settings.endpoint, true))
  const keys = await loadWalletKey(settings.mnemonicFile, { create: false })
  return new TonClientAdapter({ chain, endpoint, apiKey: settings.apiKey, keys, httpTimeoutMs: settings.httpTimeoutMs, wait })
}

function waitOptions (s: ChainSettings): Partial<WaitOptions> {
  const out: Partial<WaitOptions> = {}
  for (const [key, value] of [['timeoutMs', s.timeoutMs], ['pollIntervalMs', s.pollIntervalMs], ['httpTimeoutMs', s.httpTimeoutMs]] as const) {
    if (value === undefined) continue
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new ConfigError(`chain.${key}`, `must be a number of ms above 0, got ${String(value)}`)
  }
  if (s.timeoutMs !== undefined) out.timeoutMs = s.timeoutMs
  if (s.pollIntervalMs !== undefined) out.pollIntervalMs = s.pollIntervalMs
  return out
}

function parseEndpoint (endpoint: string, realNetwork: boolean): URL {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    throw new ConfigError('chain.endpoint', `${JSON.stringify(endpoint)} is not a URL; expected e.g. https://toncenter.com/api/v2/jsonRPC`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('chain.endpoint', `${endpoint}: expected an http(s) URL`)
  if (url.username !== '' || url.password !== '') throw new ConfigError('chain.endpoint', 'put credentials in chain.apiKey, not in the URL')
  const loopback = url.hostname === 'localhost' || url.hostname === '[::1]' || /^127\./.test(url.hostname)
  if (realNetwork && url.protocol === 'http:' && !loopback) throw new ConfigError('chain.endpoint', `${endpoint}: a testnet or mainnet endpoint must be https (plain http only on loopback)`)
  return url
}

/** A base URL gets toncenter's JSON-RPC path. */
function jsonRpcEndpoint (url: URL): string {
  if (url.pathname === '/' || url.pathname === '') return `${url.origin}/api/v2/jsonRPC`
  return url.toString()
}

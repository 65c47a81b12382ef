/**
 * The ChainAdapter over TonClient (@ton/ton, toncenter v2 API): TON testnet,
 * mainnet, or a devnet served by `cocoon chain` (devnet-server.ts). The
 * sending, waiting and exit-code logic is the shared one (adapter.ts); the
 * exit code of a refused message is read from the channel's transaction,
 * found with getTransactions, the same way on every network.
 *
 * The chain's time is the `sync_utime` the API reports with the wallet's
 * account state (on a devnet it runs ahead of the wall clock after
 * advanceTime). Fee estimates ask the API's estimateFee for the wallet's
 * part and fall back to the fee table (adapter.ts) when it fails.
 */
import { TonClient } from '@ton/ton'
import { WalletChainAdapter } from './adapter.js'
import { walletContract } from './wallet.js'
import type { Address, Cell, StateInit } from '@ton/core'
import type { KeyPair } from '@ton/crypto'
import type { ChainName } from '../types.js'
import type { ChainAccess, WaitOptions } from './adapter.js'

/** toncenter's public endpoints (an API key lifts their 1 request/s limit). */
export const TONCENTER_ENDPOINTS: Record<'testnet' | 'mainnet', string> = {
  testnet: 'https://testnet.toncenter.com/api/v2/jsonRPC',
  mainnet: 'https://toncenter.com/api/v2/jsonRPC'
}

export interface TonClientAdapterOptions {
  chain: ChainName
  /** toncenter v2 JSON-RPC endpoint (…/api/v2/jsonRPC) */
  endpoint: string
  apiKey?: string
  keys: KeyPair
  /** per HTTP request, default 15 s */
  httpTimeoutMs?: number
  /** default: 90 s per operation, polling every 1.5 s (a block is ~5 s) */
  wait?: Partial<WaitOptions>
}

export function tonClientAccess (client: TonClient, clockAddress: Address): ChainAccess {
  return {
    provider: (address, init) => client.provider(address, init ?? null),
    transactions: async (address, limit) => await client.getTransactions(address, { limit, archival: true }),
    now: async () => {
      const state = await client.getContractState(clockAddress)
      return state.timestampt > 0 ? state.timestampt : Math.floor(Date.now() / 1000)
    },
    estimateExternalFee: async (address: Address, body: Cell, init: StateInit | null) => {
      const r = await client.estimateExternalMessageFee(address, { body, initCode: init?.code ?? null, initData: init?.data ?? null, ignoreSignature: true })
      const f = r.source_fees
      return BigInt(f.in_fwd_fee + f.storage_fee + f.gas_fee + f.fwd_fee)
    }
  }
}

export class TonClientAdapter extends WalletChainAdapter {
  readonly client: TonClient
  readonly endpoint: string

  constructor (opts: TonClientAdapterOptions) {
    const client = new TonClient({ endpoint: opts.endpoint, apiKey: opts.apiKey, timeout: opts.httpTimeoutMs ?? 15_000 })
    // the chain's clock is read with the wallet's account state
    const access = tonClientAccess(client, walletContract(opts.chain, opts.keys.publicKey).address)
    super(opts.chain, access, opts.keys, { timeoutMs: 90_000, pollIntervalMs: 1_500, ...opts.wait })
    this.client = client
    this.endpoint = opts.endpoint
  }
}

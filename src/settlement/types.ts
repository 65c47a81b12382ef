/**
 * What settlement shares: channel records and states as the store keeps
 * them, and the chain a node settles on. Amounts are nanoTON (bigint).
 * Addresses are TON addresses in raw form ("0:<64 hex>").
 */
import type { ChannelInfo, PaymentChannelConfig, SignedChannelState } from '../../contracts/payment-channel.js'

export type ChainName = 'devnet' | 'testnet' | 'mainnet'

/** The network id a channel's signatures are bound to (stored in the contract). */
export const CHAIN_NETWORK_IDS: Record<ChainName, number> = {
  mainnet: -239,
  testnet: -3,
  // no real network uses it: a devnet signature is worthless anywhere else
  devnet: 0x636f636e
}

/** Which end of the channel this node is. */
export type ChannelSide = 'payer' | 'payee'

export type ChannelLifecycle = 'opening' | 'open' | 'closing' | 'closed'

/** A channel this node is a party to, as stored. */
export interface ChannelRecord {
  /** the contract's address, raw form */
  address: string
  side: ChannelSide
  /** the libp2p peer id of the other party */
  peerId: string
  networkId: number
  channelId: bigint
  disputeWindowS: number
  payerKey: Uint8Array
  payeeKey: Uint8Array
  /** wallet addresses, raw form */
  payer: string
  payee: string
  /** total funded so far, nanoTON */
  deposited: bigint
  status: ChannelLifecycle
  createdAtMs: number
  updatedAtMs: number
}

/** One state of a channel: the payer's signature always, the payee's once countersigned. */
export interface StoredState {
  /** the channel's address, raw form */
  channel: string
  seqno: bigint
  cumulative: bigint
  payerSignature: Uint8Array
  payeeSignature: Uint8Array | null
  savedAtMs: number
}

/**
 * The durable store of channels and their states. Calls are synchronous, so
 * nothing runs between checking a state against the stored one and storing
 * it; a write is visible to reads at once. Durability may come later (a
 * browser's IndexedDB commits asynchronously): a caller sends, acknowledges
 * or acts on a state only after `flush()` resolved, so `kill -9` at any
 * moment loses no state anyone was told about. The SQLite store commits each
 * write durably before it returns, and its flush resolves at once.
 */
export interface ChannelStore {
  /** Where the store lives (a file path, or `indexeddb:<name>`), for messages. */
  readonly path: string
  putChannel(record: ChannelRecord): void
  getChannel(address: string): ChannelRecord | undefined
  listChannels(filter?: { side?: ChannelSide, peerId?: string, status?: ChannelLifecycle }): ChannelRecord[]
  /**
   * Saves a state. A state with a higher seqno than the latest replaces it as
   * the latest; the same seqno with the same amount may add the payee's
   * signature. Throws ChannelError('stale_state') for a lower seqno, and for
   * the same seqno with another amount (a conflicting state).
   */
  saveState(state: StoredState): void
  /**
   * Records a countersignature that arrived after the payer signed newer
   * states: only the both-signed slot moves, and only forward. A state that
   * is not newer than the stored both-signed one is left alone.
   */
  saveBothSigned(state: StoredState): void
  /** The highest-seqno state (possibly signed by the payer only). */
  latestState(channel: string): StoredState | undefined
  /** The highest-seqno state signed by both (what a unilateral close can use). */
  latestBothSigned(channel: string): StoredState | undefined
  /**
   * Resolves once every write made before the call is durable; rejects with
   * ChannelStoreError when one of them could not be committed (the store
   * then refuses every further call, as after a crash).
   */
  flush(): Promise<void>
  close(): void
}

/** A wallet this node pays from and is paid to. */
export interface WalletInfo {
  address: string
  balance: bigint
  /** false until the wallet contract is deployed (its first outgoing message deploys it) */
  deployed: boolean
}

/** What an operation is expected to cost before it is sent. */
export interface FeeEstimate {
  /** the value attached to the message (unspent gas comes back on close) */
  attachedNanoTon: bigint
  /** expected total fees, nanoTON */
  feesNanoTon: bigint
}

/**
 * The chain a node settles on. The same code runs against the in-process
 * devnet emulator, a shared devnet served by `cocoon chain`, and TON testnet
 * or mainnet; only the adapter differs. Every send waits until the chain has
 * applied the message (or the timeout passed) and throws ChainError with the
 * contract's exit code when the channel refused it.
 */
export interface ChainAdapter {
  readonly name: ChainName
  readonly networkId: number
  /** This node's wallet. */
  wallet(): Promise<WalletInfo>
  /** Address of the channel contract for this config (deterministic, before deploying). */
  channelAddress(config: PaymentChannelConfig): string
  /** Deploys and funds a channel from this node's wallet. */
  openChannel(config: PaymentChannelConfig, amount: bigint): Promise<{ address: string }>
  topUp(channel: string, amount: bigint): Promise<void>
  cooperativeClose(channel: string, state: SignedChannelState): Promise<void>
  startClose(channel: string, state: SignedChannelState | null): Promise<void>
  challenge(channel: string, state: SignedChannelState): Promise<void>
  finishClose(channel: string): Promise<void>
  /** The channel's on-chain state, or null when no contract is deployed there. */
  getChannel(channel: string): Promise<ChannelInfo | null>
  /** Balance of any address, nanoTON (0 when the account does not exist). */
  balanceOf(address: string): Promise<bigint>
  estimateFee(operation: 'open' | 'topUp' | 'cooperativeClose' | 'startClose' | 'challenge' | 'finishClose'): Promise<FeeEstimate>
  /** Chain time, unix seconds. */
  now(): Promise<number>
  close(): Promise<void>
}

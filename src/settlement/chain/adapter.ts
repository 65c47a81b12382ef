/**
 * The one code path every chain runs: a ChainAdapter over a V5R1 wallet and
 * a small `ChainAccess` (contract providers, an account's recent
 * transactions, chain time, the API's fee estimate). The in-process devnet
 * and TonClient (testnet, mainnet, the shared devnet server) differ only in
 * their ChainAccess.
 *
 * A send is: sign a transfer from the wallet (walletSender), hand it to the
 * chain, wait for the wallet's seqno to advance, find the wallet's
 * transaction by the transfer's hash and its message to the channel, then
 * wait for the channel's transaction of that message (matched by sender and
 * created_lt) and read its compute phase: a refused message becomes a
 * ChainError carrying the contract's exit code. Every wait is bounded by
 * `timeoutMs` for the whole operation, and a transfer is signed valid for no
 * longer than that, so a send that timed out cannot land afterwards. Sends
 * from one adapter are serialized (one wallet, one seqno at a time). The
 * send returns once the channel ran the message; its payouts (and a bounce
 * of a refused message) reach their wallets in the following transactions
 * (at once on the devnet, a few seconds later on TON).
 */
import { Address, beginCell, internal, SendMode } from '@ton/core'
import { ChainError } from '../../errors.js'
import { ChannelExitCodes, Opcodes, OPERATION_VALUE, PaymentChannel, signedStateCell } from '../../../contracts/payment-channel.js'
import { CHAIN_NETWORK_IDS } from '../types.js'
import { walletContract, walletSender } from './wallet.js'
import type { Builder, Cell, ContractProvider, Message, Sender, StateInit, Transaction } from '@ton/core'
import type { KeyPair } from '@ton/crypto'
import type { WalletContractV5R1 } from '@ton/ton'
import type { ChannelInfo, PaymentChannelConfig, SignedChannelState } from '../../../contracts/payment-channel.js'
import type { ChainAdapter, ChainName, FeeEstimate, WalletInfo } from '../types.js'
import type { SentTransfer } from './wallet.js'

export type ChainOperation = 'open' | 'topUp' | 'cooperativeClose' | 'startClose' | 'challenge' | 'finishClose'

/** What an adapter needs from a chain. */
export interface ChainAccess {
  provider: (address: Address, init?: StateInit | null) => ContractProvider
  /** The account's most recent transactions, newest first. */
  transactions: (address: Address, limit: number) => Promise<Transaction[]>
  /** Chain time, unix seconds. */
  now: () => Promise<number>
  /**
   * What the wallet pays to process `body` as an external message (import,
   * storage, gas, forwarding of its out messages), from the chain's own
   * estimate; null when the chain offers none.
   */
  estimateExternalFee: (address: Address, body: Cell, init: StateInit | null) => Promise<bigint | null>
}

export interface WaitOptions {
  /** bound on one whole operation: the wallet's transaction and the channel's */
  timeoutMs: number
  pollIntervalMs: number
}

/**
 * The fee table, nanoTON per operation: `wallet` is what the sending V5R1
 * wallet's transaction costs (import, gas, forwarding the message; `open`
 * forwards the channel's code and data, hence its size), `channel` is
 * everything after it (the channel's transaction, forwarding its payouts and
 * refunds, the receivers' transactions). Measured on the devnet (@ton/sandbox,
 * default config, deployed wallets) and rounded up; deploying the wallet
 * with its first send adds about 2.8e6 to that send. The contract-only view
 * (a test treasury as sender) is bench/results/contract-fees.json.
 *
 * `estimateFee` asks the chain for the wallet part (toncenter's estimateFee,
 * or an emulation on the devnet) and adds the channel part from this table;
 * when the chain does not answer, the table gives both.
 */
export const FEE_TABLE: Record<ChainOperation, { wallet: bigint, channel: bigint }> = {
  open: { wallet: 11_800_000n, channel: 1_000_000n },
  topUp: { wallet: 3_200_000n, channel: 1_000_000n },
  cooperativeClose: { wallet: 4_300_000n, channel: 4_300_000n },
  startClose: { wallet: 4_300_000n, channel: 2_700_000n },
  challenge: { wallet: 4_300_000n, channel: 2_900_000n },
  finishClose: { wallet: 3_200_000n, channel: 3_000_000n }
}

/** Least a wallet must hold beyond the attached value to pay its own transaction. */
export const WALLET_FEE_MARGIN = 20_000_000n

const EXIT_NAMES = new Map<number, string>(Object.entries(ChannelExitCodes).map(([name, code]) => [code, name]))

/** `101 (notPayer)` for the contract's codes, the bare number for the TVM's. */
export function describeExitCode (code: number): string {
  const name = EXIT_NAMES.get(code)
  return name == null ? String(code) : `${code} (${name})`
}

/** One line for an error from a chain API (axios errors carry the server's answer). */
export function describeError (err: unknown): string {
  const e = err as { message?: string, response?: { status?: number, data?: unknown } }
  const data = e?.response?.data as { error?: unknown } | undefined
  if (data != null && typeof data === 'object' && data.error != null) return `${String(data.error)} (HTTP ${e.response?.status ?? '?'})`
  return e?.message ?? String(err)
}

export function parseAddress (address: string, what = 'address'): Address {
  try {
    return Address.parse(address)
  } catch (err) {
    throw new ChainError(`${what} ${JSON.stringify(address)} is not a TON address`, { cause: err })
  }
}

async function sleep (ms: number): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, ms))
}

/** A chain adapter for `name` over `access`, sending from the V5R1 wallet of `keys`. */
export class WalletChainAdapter implements ChainAdapter {
  readonly name: ChainName
  readonly networkId: number
  readonly walletContract: WalletContractV5R1
  protected readonly access: ChainAccess
  protected readonly wait: WaitOptions
  private readonly keys: KeyPair
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  constructor (name: ChainName, access: ChainAccess, keys: KeyPair, wait: WaitOptions) {
    this.name = name
    this.networkId = CHAIN_NETWORK_IDS[name]
    this.access = access
    this.keys = keys
    this.wait = wait
    this.walletContract = walletContract(name, keys.publicKey)
  }

  /** The wallet's address, raw form. */
  get address (): string {
    return this.walletContract.address.toRawString()
  }

  async wallet (): Promise<WalletInfo> {
    const state = await this.call('wallet', async () => await this.access.provider(this.walletContract.address).getState())
    return { address: this.address, balance: state.balance, deployed: state.state.type === 'active' }
  }

  channelAddress (config: PaymentChannelConfig): string {
    return PaymentChannel.createFromConfig(config).address.toRawString()
  }

  async openChannel (config: PaymentChannelConfig, amount: bigint): Promise<{ address: string }> {
    if (config.networkId !== this.networkId) throw new ChainError(`open: the channel's signatures are for network ${config.networkId}, this chain (${this.name}) is ${this.networkId}`)
    if (amount <= 0n) throw new ChainError('open: the deposit must be more than 0')
    const channel = PaymentChannel.createFromConfig(config)
    const state = await this.call('open', async () => await this.access.provider(channel.address).getState())
    if (state.state.type === 'active') throw new ChainError(`open: a channel is already deployed at ${channel.address.toRawString()}; use topUp to add funds`)
    await this.send('open', channel.address, amount, channel.init ?? null, async (p, via) => { await channel.sendDeploy(p, via, amount) })
    return { address: channel.address.toRawString() }
  }

  async topUp (channel: string, amount: bigint): Promise<void> {
    if (amount <= 0n) throw new ChainError('topUp: the amount must be more than 0')
    const address = parseAddress(channel, 'channel')
    await this.send('topUp', address, amount, null, async (p, via) => { await PaymentChannel.createFromAddress(address).sendTopUp(p, via, amount) })
  }

  async cooperativeClose (channel: string, state: SignedChannelState): Promise<void> {
    const address = parseAddress(channel, 'channel')
    await this.send('cooperativeClose', address, OPERATION_VALUE, null, async (p, via) => { await PaymentChannel.createFromAddress(address).sendCooperativeClose(p, via, state) })
  }

  async startClose (channel: string, state: SignedChannelState | null): Promise<void> {
    const address = parseAddress(channel, 'channel')
    await this.send('startClose', address, OPERATION_VALUE, null, async (p, via) => { await PaymentChannel.createFromAddress(address).sendStartClose(p, via, state) })
  }

  async challenge (channel: string, state: SignedChannelState): Promise<void> {
    const address = parseAddress(channel, 'channel')
    await this.send('challenge', address, OPERATION_VALUE, null, async (p, via) => { await PaymentChannel.createFromAddress(address).sendChallenge(p, via, state) })
  }

  async finishClose (channel: string): Promise<void> {
    const address = parseAddress(channel, 'channel')
    await this.send('finishClose', address, OPERATION_VALUE, null, async (p, via) => { await PaymentChannel.createFromAddress(address).sendFinishClose(p, via) })
  }

  async getChannel (channel: string): Promise<ChannelInfo | null> {
    const address = parseAddress(channel, 'channel')
    return await this.call('getChannel', async () => {
      const provider = this.access.provider(address)
      const state = await provider.getState()
      if (state.state.type !== 'active') return null
      return await PaymentChannel.createFromAddress(address).getChannel(provider)
    })
  }

  async balanceOf (address: string): Promise<bigint> {
    const parsed = parseAddress(address)
    return await this.call('balanceOf', async () => (await this.access.provider(parsed).getState()).balance)
  }

  async estimateFee (operation: ChainOperation): Promise<FeeEstimate> {
    const table = FEE_TABLE[operation]
    if (table == null) throw new ChainError(`estimateFee: unknown operation ${String(operation)}`)
    const attachedNanoTon = operation === 'open' || operation === 'topUp' ? 0n : OPERATION_VALUE
    let wallet: bigint | null = null
    try {
      wallet = await this.estimateWalletPart(operation)
    } catch {
      // the documented fallback: the fee table
    }
    return { attachedNanoTon, feesNanoTon: (wallet ?? table.wallet) + table.channel }
  }

  async now (): Promise<number> {
    return await this.call('now', async () => await this.access.now())
  }

  async close (): Promise<void> {
    this.closed = true
    await this.queue.catch(() => {})
  }

  /** The wallet part of an operation's fees as the chain estimates it, for a representative message. */
  private async estimateWalletPart (operation: ChainOperation): Promise<bigint | null> {
    const w = this.walletContract
    const provider = this.access.provider(w.address, w.init)
    const state = await provider.getState()
    const deployed = state.state.type === 'active'
    const seqno = deployed ? await w.getSeqno(provider) : 0
    const sample = sampleMessage(operation)
    const transfer = w.createTransfer({
      seqno,
      secretKey: this.keys.secretKey,
      timeout: (await this.access.now()) + 60,
      sendMode: SendMode.PAY_GAS_SEPARATELY | SendMode.IGNORE_ERRORS,
      messages: [internal({ to: sample.to, value: sample.value, init: sample.init, body: sample.body, bounce: true })]
    })
    return await this.access.estimateExternalFee(w.address, transfer, deployed ? null : w.init)
  }

  /** Runs a read against the chain, wrapping what fails in a ChainError. */
  protected async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof ChainError) throw err
      throw new ChainError(`${what}: ${describeError(err)}`, { cause: err })
    }
  }

  /** Sends one channel operation from the wallet and waits for the channel to run it (see the file comment). */
  protected async send (op: ChainOperation, channel: Address, value: bigint, init: StateInit | null, build: (provider: ContractProvider, via: Sender) => Promise<void>): Promise<Transaction> {
    const run = this.queue.then(async () => await this.sendNow(op, channel, value, init, build))
    this.queue = run.catch(() => {})
    return await run
  }

  private async sendNow (op: ChainOperation, channel: Address, value: bigint, init: StateInit | null, build: (provider: ContractProvider, via: Sender) => Promise<void>): Promise<Transaction> {
    if (this.closed) throw new ChainError(`${op}: the chain adapter is closed`)
    const deadline = performance.now() + this.wait.timeoutMs
    const w = this.walletContract
    const walletProvider = this.access.provider(w.address, w.init)
    const before = await this.call(op, async () => await walletProvider.getState())
    if (before.balance < value + WALLET_FEE_MARGIN) {
      throw new ChainError(`${op}: the wallet ${this.address} holds ${before.balance} nanoTON, less than the ${value} to send plus ${WALLET_FEE_MARGIN} for fees; fund it first`)
    }
    const seqnoBefore = before.state.type === 'active' ? await this.call(op, async () => await w.getSeqno(walletProvider)) : 0
    let sent: SentTransfer | undefined
    // valid no longer than we wait: once a send timed out, the transfer cannot land later (and be sent twice on a retry)
    const validForS = Math.max(5, Math.floor(this.wait.timeoutMs / 1000) - 5)
    const via = walletSender(w, walletProvider, this.keys.secretKey, async () => await this.access.now(), s => { sent = s }, validForS)
    try {
      await build(this.access.provider(channel, init), via)
    } catch (err) {
      const maybe = sent == null ? '' : `; if the chain got it anyway it may still apply it until chain time ${sent.validUntil}: check the wallet before retrying`
      throw new ChainError(`${op}: sending the transfer failed: ${describeError(err)}${maybe}`, { cause: err })
    }
    if (sent == null) throw new ChainError(`${op}: nothing was sent`)
    const transferHash = sent.transfer.hash()

    // 1. the wallet applied the transfer: seqno advanced, and its transaction is the one with our transfer
    await this.poll(op, deadline, `the wallet to apply the transfer (seqno ${seqnoBefore}, valid until chain time ${sent.validUntil}; check the wallet before retrying)`, async () => {
      return (await w.getSeqno(walletProvider)) > seqnoBefore ? true : undefined
    })
    const walletTx = await this.poll(op, deadline, 'the wallet\'s transaction of the transfer', async () => {
      const txs = await this.access.transactions(w.address, 32)
      return txs.find(tx => tx.inMessage?.info.type === 'external-in' && tx.inMessage.body.hash().equals(transferHash))
    })
    const out = [...walletTx.outMessages.values()].find((m: Message) => m.info.type === 'internal' && m.info.dest.equals(channel))
    if (out == null || out.info.type !== 'internal') {
      throw new ChainError(`${op}: the wallet took the transfer (seqno ${seqnoBefore}) but sent nothing to the channel; its balance did not cover ${value} nanoTON plus fees`)
    }
    const createdLt = out.info.createdLt

    // 2. the channel ran the message
    const channelTx = await this.poll(op, deadline, `the channel ${channel.toRawString()} to process the message`, async () => {
      const txs = await this.access.transactions(channel, 16)
      return txs.find(tx => tx.inMessage?.info.type === 'internal' && tx.inMessage.info.src.equals(w.address) && tx.inMessage.info.createdLt === createdLt)
    })
    checkChannelTransaction(op, channelTx)
    return channelTx
  }

  /** Polls `probe` until it yields a value; transient API errors are retried until the deadline. */
  private async poll<T>(op: string, deadline: number, what: string, probe: () => Promise<T | undefined>): Promise<T> {
    let lastError: unknown
    for (;;) {
      try {
        const value = await probe()
        if (value !== undefined) return value
      } catch (err) {
        lastError = err
      }
      if (performance.now() >= deadline) {
        const why = lastError == null ? '' : `; last error: ${describeError(lastError)}`
        throw new ChainError(`${op}: timed out after ${this.wait.timeoutMs} ms waiting for ${what}${why}`, { cause: lastError })
      }
      await sleep(Math.min(this.wait.pollIntervalMs, Math.max(1, deadline - performance.now())))
    }
  }
}

/** Throws ChainError with the contract's exit code when the channel refused the message. */
export function checkChannelTransaction (op: string, tx: Transaction): void {
  const d = tx.description
  if (d.type !== 'generic') throw new ChainError(`${op}: unexpected ${d.type} transaction on the channel`)
  const compute = d.computePhase
  if (compute.type === 'skipped') {
    throw new ChainError(`${op}: the channel did not run the message (compute phase skipped: ${compute.reason}); is a contract deployed there?`)
  }
  if (!compute.success || (compute.exitCode !== 0 && compute.exitCode !== 1)) {
    throw new ChainError(`${op}: the channel refused the message with exit code ${describeExitCode(compute.exitCode)}`, { exitCode: compute.exitCode })
  }
  if (d.aborted) {
    const code = d.actionPhase?.resultCode
    throw new ChainError(`${op}: the channel's transaction was aborted in its action phase (result code ${code ?? '?'})`)
  }
}

/** A message of the size `operation` sends, for fee estimates. */
function sampleMessage (operation: ChainOperation): { to: Address, value: bigint, body: Cell, init?: StateInit } {
  const zero = new Address(0, Buffer.alloc(32))
  const ch = PaymentChannel.createFromConfig({ networkId: -239, channelId: 1n, disputeWindowS: 3600, payerKey: Buffer.alloc(32, 3), payeeKey: Buffer.alloc(32, 4), payer: zero, payee: zero })
  const state = signedStateCell({ seqno: 1n, cumulative: 1_000_000_000n, payerSignature: Buffer.alloc(64, 1), payeeSignature: Buffer.alloc(64, 2) })
  const body = (code: number, ref?: (b: Builder) => Builder): Cell => {
    const b = beginCell().storeUint(code, 32).storeUint(0, 64)
    return (ref == null ? b : ref(b)).endCell()
  }
  switch (operation) {
    case 'open': return { to: ch.address, value: 1_000_000_000n, body: body(Opcodes.topUp), init: ch.init }
    case 'topUp': return { to: ch.address, value: 1_000_000_000n, body: body(Opcodes.topUp) }
    case 'cooperativeClose': return { to: ch.address, value: OPERATION_VALUE, body: body(Opcodes.cooperativeClose, b => b.storeRef(state)) }
    case 'startClose': return { to: ch.address, value: OPERATION_VALUE, body: body(Opcodes.startClose, b => b.storeMaybeRef(state)) }
    case 'challenge': return { to: ch.address, value: OPERATION_VALUE, body: body(Opcodes.challenge, b => b.storeRef(state)) }
    case 'finishClose': return { to: ch.address, value: OPERATION_VALUE, body: body(Opcodes.finishClose) }
  }
}

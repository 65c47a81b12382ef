/**
 * Typed wrapper of contracts/payment-channel.tolk (layout in
 * payment-channel.tlb). The same class drives the contract on the sandbox
 * and on a real network: `createFromConfig` computes the address,
 * `sendX(provider, via, ...)` builds each message, `getX(provider)` reads the
 * getters. `stateToSign` is the one definition of the bytes both parties sign.
 */
import { Address, beginCell, Cell, contractAddress, SendMode, toNano } from '@ton/core'
import { codeBoc64 } from './build/payment-channel.compiled.js'
import type { Builder, Contract, ContractProvider, Sender, StateInit } from '@ton/core'

export const Opcodes = {
  topUp: 0x746f7075,
  cooperativeClose: 0x63636c6f,
  startClose: 0x7374636c,
  challenge: 0x6368616c,
  finishClose: 0x66696e69,
  /** sent back by the contract with the unspent value of StartClose and Challenge */
  excesses: 0xd53276db
} as const

/** What a signature is for: a state either side may close with, or an agreed final close. */
export const SignatureTags = {
  state: 0x43435354,
  cooperative: 0x4343434c
} as const
export type SignatureTag = keyof typeof SignatureTags

/** Exit codes the contract throws; a bounced message carries one of these. */
export const ChannelExitCodes = {
  notPayer: 101,
  notParty: 102,
  notOpen: 103,
  notClosing: 104,
  closed: 105,
  badPayerSignature: 106,
  badPayeeSignature: 107,
  staleState: 108,
  windowOpen: 109,
  windowOver: 110,
  overspent: 111,
  unknownOp: 0xffff
} as const

export const ChannelStatus = { open: 0, closing: 1, closed: 2 } as const
export type ChannelStatusName = keyof typeof ChannelStatus

/** The contract keeps at least this much unpaid on every close, for fees. */
export const CLOSE_RESERVE = toNano('0.01')

/** Gas money to attach to each operation (unspent value goes back to the caller on close). */
export const OPERATION_VALUE = toNano('0.05')

export function channelCode (): Cell {
  return Cell.fromBase64(codeBoc64)
}

export interface PaymentChannelConfig {
  /** The network the signatures are for (-239 mainnet, -3 testnet, anything else for a devnet). */
  networkId: number
  /** Tells apart channels between the same two parties. */
  channelId: bigint
  disputeWindowS: number
  payerKey: Buffer
  payeeKey: Buffer
  payer: Address
  payee: Address
}

export function channelData (c: PaymentChannelConfig): Cell {
  if (c.payerKey.length !== 32 || c.payeeKey.length !== 32) throw new RangeError('payerKey and payeeKey must be 32-byte ed25519 public keys')
  return beginCell()
    .storeUint(ChannelStatus.open, 8)
    .storeInt(c.networkId, 32)
    .storeUint(c.channelId, 64)
    .storeUint(c.disputeWindowS, 32)
    .storeBuffer(c.payerKey)
    .storeBuffer(c.payeeKey)
    .storeCoins(0n)
    .storeUint(0n, 64)
    .storeCoins(0n)
    .storeUint(0, 32)
    .storeRef(beginCell().storeAddress(c.payer).storeAddress(c.payee).endCell())
    .endCell()
}

export interface ChannelStateFields {
  seqno: bigint
  cumulative: bigint
}

export interface SignedChannelState extends ChannelStateFields {
  payerSignature: Buffer
  payeeSignature: Buffer
}

/** The cell whose hash a party signs for `tag` and this state of `channel`. */
export function stateToSign (tag: SignatureTag, channel: { address: Address, networkId: number, channelId: bigint }, state: ChannelStateFields): Cell {
  return beginCell()
    .storeUint(SignatureTags[tag], 32)
    .storeInt(channel.networkId, 32)
    .storeAddress(channel.address)
    .storeUint(channel.channelId, 64)
    .storeUint(state.seqno, 64)
    .storeCoins(state.cumulative)
    .endCell()
}

export function signedStateCell (s: SignedChannelState): Cell {
  if (s.payerSignature.length !== 64 || s.payeeSignature.length !== 64) throw new RangeError('signatures must be 64 bytes')
  return beginCell()
    .storeUint(s.seqno, 64)
    .storeCoins(s.cumulative)
    .storeRef(beginCell().storeBuffer(s.payerSignature).endCell())
    .storeRef(beginCell().storeBuffer(s.payeeSignature).endCell())
    .endCell()
}

/** What the `channel` getter reports: the channel's parameters and where it stands. */
export interface ChannelInfo extends PaymentChannelConfig {
  status: ChannelStatusName
  deposited: bigint
  seqno: bigint
  cumulative: bigint
  closingSince: number
  balance: bigint
}

const STATUS_NAMES: Record<number, ChannelStatusName> = { 0: 'open', 1: 'closing', 2: 'closed' }

function keyBuffer (n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex')
}

export interface OperationOptions {
  /** attached value (unspent gas comes back); default OPERATION_VALUE */
  value?: bigint
  queryId?: bigint
}

export class PaymentChannel implements Contract {
  readonly address: Address
  readonly init?: StateInit

  constructor (address: Address, init?: StateInit) {
    this.address = address
    this.init = init
  }

  static createFromAddress (address: Address): PaymentChannel {
    return new PaymentChannel(address)
  }

  static createFromConfig (config: PaymentChannelConfig, workchain = 0): PaymentChannel {
    const init = { code: channelCode(), data: channelData(config) }
    return new PaymentChannel(contractAddress(workchain, init), init)
  }

  /** Deploys and funds in one message (the payer's). */
  async sendDeploy (provider: ContractProvider, via: Sender, value: bigint, queryId = 0n): Promise<void> {
    await this.sendTopUp(provider, via, value, queryId)
  }

  async sendTopUp (provider: ContractProvider, via: Sender, value: bigint, queryId = 0n): Promise<void> {
    await provider.internal(via, { value, sendMode: SendMode.PAY_GAS_SEPARATELY, body: beginCell().storeUint(Opcodes.topUp, 32).storeUint(queryId, 64).endCell() })
  }

  async sendCooperativeClose (provider: ContractProvider, via: Sender, state: SignedChannelState, opts: OperationOptions = {}): Promise<void> {
    await this.operation(provider, via, Opcodes.cooperativeClose, opts, b => b.storeRef(signedStateCell(state)))
  }

  /** Opens the dispute window with the latest both-signed state, or with none (nothing owed yet). */
  async sendStartClose (provider: ContractProvider, via: Sender, state: SignedChannelState | null, opts: OperationOptions = {}): Promise<void> {
    await this.operation(provider, via, Opcodes.startClose, opts, b => b.storeMaybeRef(state == null ? null : signedStateCell(state)))
  }

  async sendChallenge (provider: ContractProvider, via: Sender, state: SignedChannelState, opts: OperationOptions = {}): Promise<void> {
    await this.operation(provider, via, Opcodes.challenge, opts, b => b.storeRef(signedStateCell(state)))
  }

  async sendFinishClose (provider: ContractProvider, via: Sender, opts: OperationOptions = {}): Promise<void> {
    await this.operation(provider, via, Opcodes.finishClose, opts, b => b)
  }

  /** An operation message: opcode, query id, then what `fill` adds; OPERATION_VALUE attached unless told. */
  private async operation (provider: ContractProvider, via: Sender, op: number, opts: OperationOptions, fill: (b: Builder) => Builder): Promise<void> {
    const body = fill(beginCell().storeUint(op, 32).storeUint(opts.queryId ?? 0n, 64)).endCell()
    await provider.internal(via, { value: opts.value ?? OPERATION_VALUE, sendMode: SendMode.PAY_GAS_SEPARATELY, body })
  }

  async getChannel (provider: ContractProvider): Promise<ChannelInfo> {
    const { stack } = await provider.get('channel', [])
    const status = stack.readNumber()
    return {
      status: STATUS_NAMES[status] ?? (() => { throw new RangeError(`unknown channel status ${status}`) })(),
      networkId: stack.readNumber(),
      channelId: stack.readBigNumber(),
      disputeWindowS: stack.readNumber(),
      payerKey: keyBuffer(stack.readBigNumber()),
      payeeKey: keyBuffer(stack.readBigNumber()),
      payer: stack.readAddress(),
      payee: stack.readAddress(),
      deposited: stack.readBigNumber(),
      seqno: stack.readBigNumber(),
      cumulative: stack.readBigNumber(),
      closingSince: stack.readNumber(),
      balance: stack.readBigNumber()
    }
  }

  /** Unix time from which FinishClose is accepted; 0 while the channel is open. */
  async getClosesAt (provider: ContractProvider): Promise<number> {
    const { stack } = await provider.get('closesAt', [])
    return stack.readNumber()
  }
}

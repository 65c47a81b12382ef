/**
 * A node's payment channels: as payer it opens (deploys and funds) a channel
 * to each peer it buys from, on first need; as payee it accepts a channel
 * only after checking on chain that the contract at that address is ours
 * (its address derives from our code and the claimed parameters), names this
 * node's wallet and channel key, and holds at least the minimum deposit.
 *
 * Closing: cooperatively (both sign the final state under the cooperative
 * tag; the payer submits it), or alone with the latest both-signed state,
 * after which the payee watches for closes that name an older state and
 * challenges them with its newer one.
 */
import { Address } from '@ton/core'
import { ChannelError } from '../errors.js'
import { rawAddress, signState, checkStateSignature, toContractState } from './channel-state.js'
import { PayeeChannel, PayerChannel, spendable } from './channels.js'
import type { ChannelKey } from './channel-key.js'
import type { ChainAdapter, ChannelRecord, ChannelStore } from './types.js'
import type { PaymentChannelConfig } from '../../contracts/payment-channel.js'
import type { Logger } from '@libp2p/interface'

export interface PaymentTerms {
  chain: ChainAdapter['name']
  networkId: number
  wallet: string
  channelKey: Uint8Array
  minDisputeWindowS: number
  minDeposit: bigint
  creditWindow: bigint
}

export interface ChannelManagerInit {
  store: ChannelStore
  key: ChannelKey
  chain: ChainAdapter
  /** This node's wallet address, raw form. */
  wallet: string
  /** As payer: what a new channel is funded with. */
  deposit: bigint
  /** As payer: the dispute window of channels this node opens. */
  disputeWindowS: number
  /** As payee: the least dispute window and deposit accepted. */
  minDisputeWindowS: number
  minDeposit: bigint
  /** As payee: what this node delivers ahead of payment, at most. */
  creditWindow: bigint
  log: Logger
  now?: () => number
}

export class ChannelManager {
  private readonly init: ChannelManagerInit
  private readonly payers = new Map<string, PayerChannel>()
  private readonly payees = new Map<string, PayeeChannel>()
  private readonly opening = new Map<string, Promise<PayerChannel>>()

  constructor (init: ChannelManagerInit) {
    this.init = init
    for (const record of init.store.listChannels()) {
      if (record.status === 'closed') continue
      if (record.side === 'payer') this.payers.set(record.address, new PayerChannel(record, init.store, init.key))
      else this.payees.set(record.address, new PayeeChannel(record, init.store, init.key))
    }
  }

  get chain (): ChainAdapter {
    return this.init.chain
  }

  /** What this node, as payee, asks of channels opened to it. */
  terms (): PaymentTerms {
    return {
      chain: this.init.chain.name,
      networkId: this.init.chain.networkId,
      wallet: this.init.wallet,
      channelKey: this.init.key.publicKey,
      minDisputeWindowS: this.init.minDisputeWindowS,
      minDeposit: this.init.minDeposit,
      creditWindow: this.init.creditWindow
    }
  }

  /** The open channel this node pays `peerId` through, if any. */
  payerFor (peerId: string): PayerChannel | undefined {
    for (const c of this.payers.values()) if (c.record.peerId === peerId && c.record.status === 'open') return c
    return undefined
  }

  payee (channel: string): PayeeChannel | undefined {
    return this.payees.get(channel)
  }

  payer (channel: string): PayerChannel | undefined {
    return this.payers.get(channel)
  }

  /** Resolves once every state and record written so far is durable (see ChannelStore.flush). */
  async flush (): Promise<void> {
    await this.init.store.flush()
  }

  list (filter?: Parameters<ChannelStore['listChannels']>[0]): ChannelRecord[] {
    return this.init.store.listChannels(filter)
  }

  /**
   * The open channel to `peerId`, opening one on chain first if none exists:
   * `announce` tells the payee (the /cocoon/pay open request). Concurrent
   * callers for one peer share one opening.
   */
  async ensurePayer (peerId: string, terms: PaymentTerms, announce: (record: ChannelRecord) => Promise<void>): Promise<PayerChannel> {
    const open = this.payerFor(peerId)
    if (open != null) return open
    let pending = this.opening.get(peerId)
    if (pending == null) {
      pending = this.openTo(peerId, terms, announce).finally(() => { this.opening.delete(peerId) })
      this.opening.set(peerId, pending)
    }
    return pending
  }

  private async openTo (peerId: string, terms: PaymentTerms, announce: (record: ChannelRecord) => Promise<void>): Promise<PayerChannel> {
    if (terms.chain !== this.init.chain.name || terms.networkId !== this.init.chain.networkId) {
      throw new ChannelError('wrong_channel', `${peerId} settles on ${terms.chain} (network ${terms.networkId}), this node on ${this.init.chain.name} (network ${this.init.chain.networkId})`)
    }
    const deposit = this.init.deposit > terms.minDeposit ? this.init.deposit : terms.minDeposit
    const disputeWindowS = Math.max(this.init.disputeWindowS, terms.minDisputeWindowS)
    const nowMs = (this.init.now ?? Date.now)()
    const config: PaymentChannelConfig = {
      networkId: this.init.chain.networkId,
      // unique per pair and time, so reopening after a close gets a fresh address
      channelId: BigInt(nowMs) * 1000n + BigInt(Math.floor(Math.random() * 1000)),
      disputeWindowS,
      payerKey: Buffer.from(this.init.key.publicKey),
      payeeKey: Buffer.from(terms.channelKey),
      payer: Address.parseRaw(this.init.wallet),
      payee: Address.parseRaw(rawAddress(terms.wallet))
    }
    const record: ChannelRecord = {
      address: this.init.chain.channelAddress(config),
      side: 'payer',
      peerId,
      networkId: config.networkId,
      channelId: config.channelId,
      disputeWindowS,
      payerKey: config.payerKey,
      payeeKey: config.payeeKey,
      payer: this.init.wallet,
      payee: config.payee.toRawString(),
      deposited: deposit,
      status: 'opening',
      createdAtMs: nowMs,
      updatedAtMs: nowMs
    }
    if (this.init.chain.name !== 'devnet') {
      // real money: say what opening costs before the deposit leaves the wallet
      const fee = await this.init.chain.estimateFee('open').catch(() => undefined)
      if (fee != null) this.init.log('opening a channel to %s: %s nanoTON deposit, about %s nanoTON in fees', peerId, deposit, fee.feesNanoTon)
    }
    // stored before the deposit leaves the wallet: a crash now leaves a record to recover from
    this.init.store.putChannel(record)
    try {
      await this.init.chain.openChannel(config, deposit)
    } catch (err) {
      // it may have landed anyway (a timeout): the chain says which
      const landed = await this.init.chain.getChannel(record.address).catch(() => null)
      if (landed?.status !== 'open') {
        this.init.store.putChannel({ ...record, status: 'closed', updatedAtMs: Date.now() })
        throw err
      }
    }
    const onChain = await this.init.chain.getChannel(record.address)
    const opened: ChannelRecord = { ...record, deposited: onChain?.deposited ?? deposit, status: 'open', updatedAtMs: Date.now() }
    this.init.store.putChannel(opened)
    const channel = new PayerChannel(opened, this.init.store, this.init.key)
    this.payers.set(opened.address, channel)
    this.init.log('opened channel %s to %s with %s nanoTON', opened.address, peerId, opened.deposited)
    await announce(opened)
    return channel
  }

  /** As payee: checks a channel a payer says it opened to this node, and takes it. */
  async acceptOpen (peerId: string, req: { channel: string, channelId: bigint, payerKey: Uint8Array, payerWallet: string, disputeWindowS: number }): Promise<PayeeChannel> {
    const address = rawAddress(req.channel)
    const known = this.payees.get(address)
    if (known != null) {
      if (known.record.peerId !== peerId) throw new ChannelError('wrong_channel', `${address} belongs to another peer`)
      return known
    }
    if (req.payerKey.length !== 32) throw new ChannelError('malformed', 'the payer key must be 32 bytes')
    const config: PaymentChannelConfig = {
      networkId: this.init.chain.networkId,
      channelId: req.channelId,
      disputeWindowS: req.disputeWindowS,
      payerKey: Buffer.from(req.payerKey),
      payeeKey: Buffer.from(this.init.key.publicKey),
      payer: Address.parseRaw(rawAddress(req.payerWallet)),
      payee: Address.parseRaw(this.init.wallet)
    }
    // the address commits to our code and these parameters: a match proves both
    if (this.init.chain.channelAddress(config) !== address) {
      throw new ChannelError('wrong_channel', `${address} is not a Cocoon channel to this node with those parameters`)
    }
    if (req.disputeWindowS < this.init.minDisputeWindowS) {
      throw new ChannelError('wrong_channel', `a dispute window of ${req.disputeWindowS} s is below the ${this.init.minDisputeWindowS} s this node requires`)
    }
    const onChain = await this.init.chain.getChannel(address)
    if (onChain == null) throw new ChannelError('unknown_channel', `no contract is deployed at ${address} yet`)
    if (onChain.status !== 'open') throw new ChannelError('not_open', `${address} is ${onChain.status} on chain`)
    if (onChain.deposited < this.init.minDeposit) throw new ChannelError('overspent', `${address} holds ${onChain.deposited} nanoTON, below the ${this.init.minDeposit} this node requires`)
    const nowMs = Date.now()
    const record: ChannelRecord = {
      address,
      side: 'payee',
      peerId,
      networkId: config.networkId,
      channelId: config.channelId,
      disputeWindowS: config.disputeWindowS,
      payerKey: config.payerKey,
      payeeKey: config.payeeKey,
      payer: config.payer.toRawString(),
      payee: this.init.wallet,
      deposited: onChain.deposited,
      status: 'open',
      createdAtMs: nowMs,
      updatedAtMs: nowMs
    }
    this.init.store.putChannel(record)
    const channel = new PayeeChannel(record, this.init.store, this.init.key)
    this.payees.set(address, channel)
    this.init.log('accepted channel %s from %s with %s nanoTON', address, peerId, onChain.deposited)
    return channel
  }

  /** Re-reads a channel's deposit from the chain (after a top-up). */
  async refreshDeposit (channel: string): Promise<bigint> {
    const end = this.payees.get(channel) ?? this.payers.get(channel)
    if (end == null) throw new ChannelError('unknown_channel', `${channel} is not a channel of this node`)
    const onChain = await this.init.chain.getChannel(channel)
    if (onChain == null) throw new ChannelError('unknown_channel', `no contract at ${channel}`)
    end.update({ deposited: onChain.deposited })
    return onChain.deposited
  }

  /** As payer: funds a channel further. */
  async topUp (channel: string, amount: bigint): Promise<bigint> {
    const end = this.payers.get(channel)
    if (end == null) throw new ChannelError('unknown_channel', `${channel} is not a channel this node pays through`)
    await this.init.chain.topUp(channel, amount)
    return this.refreshDeposit(channel)
  }

  /** As payer: the final state to close at, signed under the cooperative tag. */
  closeProposal (channel: string): { seqno: bigint, cumulative: bigint, payerSignature: Buffer } {
    const end = this.payers.get(channel)
    if (end == null) throw new ChannelError('unknown_channel', `${channel} is not a channel this node pays through`)
    const latest = end.latest()
    const state = { channel, seqno: latest?.seqno ?? 0n, cumulative: latest?.cumulative ?? 0n }
    return { ...state, payerSignature: signState(this.init.key, end.record, state, 'cooperative') }
  }

  /**
   * As payee: countersigns a cooperative close, only at or above everything
   * the payer already signed (never for less than was paid).
   */
  acceptClose (peerId: string, req: { channel: string, seqno: bigint, cumulative: bigint, payerSignature: Uint8Array }): Buffer {
    const end = this.payees.get(req.channel)
    if (end == null || end.record.peerId !== peerId) throw new ChannelError('unknown_channel', `${req.channel} is not a channel from this peer`)
    const latest = end.latest()
    if (latest != null && (req.seqno < latest.seqno || req.cumulative < latest.cumulative)) {
      throw new ChannelError('stale_state', `a close at seqno ${req.seqno} / ${req.cumulative} nanoTON is below the latest state ${latest.seqno} / ${latest.cumulative}`)
    }
    if (req.cumulative > spendable(end.record)) throw new ChannelError('overspent', `a close for ${req.cumulative} nanoTON exceeds what ${req.channel} can pay`)
    const state = { channel: req.channel, seqno: req.seqno, cumulative: req.cumulative }
    checkStateSignature(end.record, state, 'payer', req.payerSignature, 'cooperative')
    end.update({ status: 'closing' })
    return signState(this.init.key, end.record, state, 'cooperative')
  }

  /** As payer: submits an agreed close on chain; the channel pays out at once. */
  async finishCooperative (channel: string, proposal: { seqno: bigint, cumulative: bigint, payerSignature: Buffer }, payeeSignature: Uint8Array): Promise<void> {
    const end = this.payers.get(channel)
    if (end == null) throw new ChannelError('unknown_channel', `${channel} is not a channel this node pays through`)
    checkStateSignature(end.record, { channel, seqno: proposal.seqno, cumulative: proposal.cumulative }, 'payee', payeeSignature, 'cooperative')
    end.update({ status: 'closing' })
    await this.init.chain.cooperativeClose(channel, { seqno: proposal.seqno, cumulative: proposal.cumulative, payerSignature: proposal.payerSignature, payeeSignature: Buffer.from(payeeSignature) })
    end.update({ status: 'closed' })
    this.payers.delete(channel)
  }

  /** Either side, alone: opens the dispute window with the latest both-signed state. */
  async startClose (channel: string): Promise<void> {
    const end = this.payers.get(channel) ?? this.payees.get(channel)
    if (end == null) throw new ChannelError('unknown_channel', `${channel} is not a channel of this node`)
    const both = end.latestBothSigned()
    end.update({ status: 'closing' })
    await this.init.chain.startClose(channel, both == null ? null : toContractState(both))
  }

  /**
   * Looks at every closing channel on chain: challenges a close that stands
   * on an older state than this node's latest both-signed one, and finishes
   * those whose window is over. Returns what it did, for logs and tests.
   */
  async watch (): Promise<Array<{ channel: string, action: 'challenged' | 'finished' }>> {
    const done: Array<{ channel: string, action: 'challenged' | 'finished' }> = []
    const nowS = await this.init.chain.now()
    for (const end of [...this.payers.values(), ...this.payees.values()]) {
      const onChain = await this.init.chain.getChannel(end.address).catch(() => null)
      if (onChain == null) continue
      if (onChain.status === 'closed') {
        end.update({ status: 'closed' })
        this.payers.delete(end.address)
        this.payees.delete(end.address)
        continue
      }
      if (onChain.status !== 'closing') continue
      const both = end.latestBothSigned()
      const windowOver = nowS >= onChain.closingSince + onChain.disputeWindowS
      if (!windowOver && both != null && both.seqno > onChain.seqno) {
        await this.init.chain.challenge(end.address, toContractState(both))
        done.push({ channel: end.address, action: 'challenged' })
        this.init.log('challenged the close of %s with seqno %s (it stood on %s)', end.address, both.seqno, onChain.seqno)
      } else if (windowOver) {
        await this.init.chain.finishClose(end.address)
        end.update({ status: 'closed' })
        this.payers.delete(end.address)
        this.payees.delete(end.address)
        done.push({ channel: end.address, action: 'finished' })
      }
    }
    return done
  }
}

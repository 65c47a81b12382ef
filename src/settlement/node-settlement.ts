/**
 * Everything a node needs to pay and be paid: its chain (the in-process
 * devnet, a shared devnet server, or TON), wallet, channel key, durable
 * channel store, channel manager, the /cocoon/pay service (payees) and the
 * channel opener (payers), and a watcher that challenges closes on older
 * states and finishes expired windows.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ChannelError, CocoonError, ConfigError } from '../errors.js'
import { AdminActionError } from '../ops/admin-server.js'
import { loadOrCreateChannelKey } from './channel-key-node.js'
import { ChannelManager } from './channel-manager.js'
import { ChannelOpener } from './channel-opener.js'
import { announceTopUp, PayService, requestClose, sendUpdate } from './pay-service.js'
import { ChannelReconciler } from './reconciler.js'
import { peerIdFromString } from '@libp2p/peer-id'
import { openChannelStore } from './store.js'
import { createChainAdapter, DevnetAdapter, DevnetServerClient, MNEMONIC_FILE } from './chain/index.js'
import type { Devnet } from './chain/index.js'
import type { ChainAdapter, ChannelRecord, ChannelStore, StoredState, WalletInfo } from './types.js'
import { fromNano } from '@ton/core'
import type { PayerChannel } from './channels.js'
import type { NodeConfig } from '../config/schema.js'
import type { CocoonLibp2p } from '../p2p/node.js'
import type { NodeMetrics } from '../p2p/metrics.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { Logger } from '@libp2p/interface'

export const CHANNEL_STORE_FILE = 'channels.sqlite'

export interface NodeSettlementOptions {
  /** A devnet shared by the nodes of one process (`cocoon devnet`, tests). */
  devnet?: Devnet
  metrics?: NodeMetrics
  log: Logger
  console: ConsoleLog
}

export interface SettlementStatus {
  chain: string
  wallet: { address: string, balance: string, deployed: boolean } | { error: string }
  channels: Array<{ address: string, side: string, peer: string, status: string, deposited: string, seqno: string | null, cumulative: string | null, countersigned: string | null }>
}

export class NodeSettlement {
  readonly chain: ChainAdapter
  readonly store: ChannelStore
  readonly manager: ChannelManager
  readonly opener: ChannelOpener
  readonly payService: PayService
  private readonly config: NodeConfig
  private readonly options: NodeSettlementOptions
  /** The devnet faucet (undefined on real networks); it tops payers up by itself when settlement.devnetFaucet is on. */
  private readonly faucet?: (address: string, amount: bigint) => Promise<void>
  private walletCache?: { info: WalletInfo, atMs: number }
  private readonly node: CocoonLibp2p
  private watchTimer?: ReturnType<typeof setInterval>
  private readonly toppingUp = new Set<string>()
  private watching?: Promise<unknown>
  /** Re-sends payer states the payee has not countersigned. */
  readonly reconciler: ChannelReconciler

  private constructor (init: { node: CocoonLibp2p, config: NodeConfig, chain: ChainAdapter, store: ChannelStore, manager: ChannelManager, opener: ChannelOpener, payService: PayService, options: NodeSettlementOptions, faucet?: (address: string, amount: bigint) => Promise<void> }) {
    this.node = init.node
    this.config = init.config
    this.chain = init.chain
    this.store = init.store
    this.manager = init.manager
    this.opener = init.opener
    this.payService = init.payService
    this.options = init.options
    this.faucet = init.faucet
    this.reconciler = new ChannelReconciler({
      manager: init.manager,
      send: async (peer, update) => sendUpdate(init.node, peer, update),
      log: init.options.log
    })
  }

  static async open (config: NodeConfig, node: CocoonLibp2p, options: NodeSettlementOptions): Promise<NodeSettlement> {
    const s = config.settlement
    const apiKey = s.apiKeyFile == null ? undefined : (await readFile(s.apiKeyFile, 'utf8').catch(err => { throw new ConfigError('settlement.apiKeyFile', `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err }) })).trim()
    const mnemonicFile = s.mnemonicFile ?? undefined
    const chain: ChainAdapter = s.chain === 'devnet' && options.devnet != null
      ? await DevnetAdapter.open({ devnet: options.devnet, mnemonicFile: mnemonicFile ?? join(config.dataDir, MNEMONIC_FILE) })
      : await createChainAdapter({ chain: s.chain, dataDir: config.dataDir, endpoint: s.endpoint ?? undefined, apiKey, mnemonicFile }).catch(err => { throw asSettlementConfigError(err) })
    const server = s.chain === 'devnet' && s.endpoint != null ? new DevnetServerClient(s.endpoint) : undefined
    const faucet = chain instanceof DevnetAdapter
      ? async (address: string, amount: bigint) => { await chain.fund(address, amount) }
      : server == null ? undefined : async (address: string, amount: bigint) => { await server.fund(address, amount) }
    // states are acknowledged only after flush() (every payer and payee path awaits it), so they can share commits
    const store = openChannelStore(join(config.dataDir, CHANNEL_STORE_FILE), { groupCommit: true })
    try {
      const key = await loadOrCreateChannelKey(config.dataDir)
      const wallet = (await chain.wallet()).address
      const manager = new ChannelManager({
        store,
        key,
        chain,
        wallet,
        deposit: BigInt(s.deposit),
        disputeWindowS: s.disputeWindowS,
        minDisputeWindowS: s.minDisputeWindowS,
        minDeposit: BigInt(s.minDeposit),
        creditWindow: BigInt(s.creditWindow),
        log: options.log
      })
      const payService = new PayService(node, { manager, metrics: options.metrics, log: options.log })
      return new NodeSettlement({ node, config, chain, store, manager, opener: new ChannelOpener(node, manager, options.log), payService, options, faucet })
    } catch (err) {
      store.close()
      await chain.close().catch(() => {})
      throw err
    }
  }

  async start (): Promise<void> {
    await this.payService.start()
    const metrics = this.options.metrics
    if (metrics != null) {
      metrics.channels = () => this.manager.list().filter(c => c.status !== 'closed').map(c => {
        const a = channelAmounts(c, this.store)
        const unpaid = c.side === 'payee' ? this.manager.payee(c.address)?.unpaid : undefined
        return { side: c.side, peer: c.peerId, channel: c.address, deposited: c.deposited, cumulative: a.latest?.cumulative ?? 0n, countersigned: a.both?.cumulative ?? 0n, unpaid }
      })
    }
    if (this.config.role === 'client' || this.config.role === 'proxy') await this.fundIfLow()
    const info = await this.wallet()
    this.options.console.info(`settles on ${this.chain.name}: wallet ${info.address} holds ${fromNano(info.balance)} TON; ${this.manager.list().filter(c => c.status !== 'closed').length} channels`)
    this.watchTimer = setInterval(() => { void this.watch() }, this.config.settlement.watchIntervalMs)
    this.watchTimer.unref?.()
    this.reconciler.start()
  }

  async stop (): Promise<void> {
    clearInterval(this.watchTimer)
    this.reconciler.stop()
    await this.watching?.catch(() => {})
    await this.payService.stop()
    this.store.close()
    await this.chain.close().catch(() => {})
  }

  /**
   * The channel this node pays `peer` through, opened on first need. When
   * less than a quarter of its deposit is left, it is topped up with another
   * deposit in the background, so jobs do not stop at the bottom of it.
   */
  /** Whether a channel paying `peer` is open now (one indexed lookup: this runs for every job). */
  canPay (peer: string): boolean {
    return this.store.listChannels({ side: 'payer', peerId: peer, status: 'open' }).length > 0
  }

  /** The peers this node has an open channel to pay. */
  payablePeers (): Set<string> {
    return new Set(this.manager.list().filter(c => c.side === 'payer' && c.status === 'open').map(c => c.peerId))
  }

  async payerFor (peer: string, signal?: AbortSignal): Promise<PayerChannel> {
    // a new channel needs its deposit in the wallet: on a devnet, take it from the faucet first
    if (!this.canPay(peer)) await this.fundIfLow()
    const channel = await this.opener.payerFor(peer, signal)
    if (channel.remaining < channel.record.deposited / 4n && !this.toppingUp.has(channel.address)) {
      this.toppingUp.add(channel.address)
      void this.topUp(channel).finally(() => { this.toppingUp.delete(channel.address) })
    }
    return channel
  }

  private async topUp (channel: PayerChannel): Promise<void> {
    try {
      await this.fundIfLow()
      await this.topUpBy(channel.address, BigInt(this.config.settlement.deposit))
    } catch (err) {
      this.options.log('could not top up %s - %s', channel.address, (err as Error).message)
    }
  }

  /** Funds a channel further on chain and tells the payee; returns the new deposit total. */
  private async topUpBy (channel: string, amount: bigint): Promise<bigint> {
    const deposited = await this.manager.topUp(channel, amount)
    this.walletCache = undefined
    const payer = this.manager.payer(channel)
    if (payer != null) {
      await announceTopUp(this.node, peerIdFromString(payer.record.peerId), channel).catch(err => { this.options.log('could not tell %s about the top-up - %s', payer.record.peerId, (err as Error).message) })
    }
    this.options.log('topped up %s by %s nanoTON', channel, amount)
    return deposited
  }

  /** Checks closing channels on chain now (also runs every watchIntervalMs). */
  async watch (): Promise<Array<{ channel: string, action: string }>> {
    const run = this.manager.watch().catch(err => {
      this.options.log('channel watch failed - %s', (err as Error).message)
      return []
    })
    this.watching = run
    return run
  }

  /**
   * Closes a channel this node is party to. As payer, cooperatively by
   * default: the payee countersigns the final state over /cocoon/pay and the
   * channel pays out at once. `force` (or being the payee) closes alone with
   * the latest both-signed state; the channel pays out once the dispute
   * window is over (the watcher finishes it).
   */
  async closeChannel (address: string, options: { force?: boolean } = {}): Promise<'closed' | 'closing'> {
    const payer = this.manager.payer(address)
    if (payer != null && options.force !== true) {
      const proposal = this.manager.closeProposal(address)
      const payeeSignature = await requestClose(this.node, peerIdFromString(payer.record.peerId), { channel: address, ...proposal })
      await this.manager.finishCooperative(address, proposal, payeeSignature)
      return 'closed'
    }
    await this.manager.startClose(address)
    return 'closing'
  }

  /** Operator reads for the admin endpoint: GET /wallet and /channels. */
  async adminRead (path: string): Promise<unknown> {
    if (path === '/wallet') return await this.walletStatus(0)
    if (path === '/channels') return this.channelsStatus()
    return undefined
  }

  /** Operator actions for the admin endpoint (POST); AdminActionError for a refusal. */
  async adminAct (path: string, body: Record<string, unknown>): Promise<unknown> {
    const text = (key: string): string => {
      const v = body[key]
      if (typeof v !== 'string' || v === '') throw new AdminActionError(400, `${key} must be a non-empty string`)
      return v
    }
    const nano = (key: string): bigint => {
      const v = body[key]
      if (typeof v !== 'string' || !/^\d{1,20}$/.test(v) || BigInt(v) === 0n) throw new AdminActionError(400, `${key} must be a whole number of nanoTON above 0, as a string`)
      return BigInt(v)
    }
    try {
      switch (path) {
        case '/wallet/faucet': {
          if (this.faucet == null) throw new AdminActionError(409, 'the faucet exists on a devnet only')
          await this.faucet((await this.wallet()).address, nano('amount'))
          return await this.walletStatus(0)
        }
        case '/channels/open': {
          const peer = text('peer')
          const estimate = await this.chain.estimateFee('open').catch(() => undefined)
          const channel = await this.payerFor(peer)
          return { channel: channel.address, deposited: channel.record.deposited.toString(), estimatedFeesNanoTon: estimate?.feesNanoTon.toString() ?? null }
        }
        case '/channels/topup': {
          const channel = text('channel')
          const deposited = await this.topUpBy(channel, nano('amount'))
          return { channel, deposited: deposited.toString() }
        }
        case '/channels/pay': {
          const channel = text('channel')
          const payer = this.manager.payer(channel)
          if (payer == null) throw new AdminActionError(409, `${channel} is not a channel this node pays through`)
          const update = payer.payUpTo(payer.paid + nano('amount'))
          await payer.flush()
          const payeeSignature = await sendUpdate(this.node, peerIdFromString(payer.record.peerId), update)
          const both = payer.countersigned(update.seqno, payeeSignature)
          return { channel, seqno: update.seqno.toString(), cumulative: update.cumulative.toString(), countersigned: both?.seqno === update.seqno }
        }
        case '/channels/close': {
          const channel = text('channel')
          return { channel, status: await this.closeChannel(channel, { force: body.force === true }) }
        }
        default:
          return undefined
      }
    } catch (err) {
      if (err instanceof ChannelError) throw new AdminActionError(409, err.message)
      if (err instanceof CocoonError) throw new AdminActionError(502, err.message)
      throw err
    }
  }

  /** devnet with settlement.devnetFaucet: tops the wallet up from the faucet so it can fund channels. */
  async fundIfLow (): Promise<void> {
    if (this.faucet == null || !this.config.settlement.devnetFaucet) return
    const info = await this.wallet(0)
    const want = BigInt(this.config.settlement.deposit) * 4n
    if (info.balance < want) {
      await this.faucet(info.address, want - info.balance + 1_000_000_000n)
      this.walletCache = undefined
      this.options.log('funded wallet %s from the devnet faucet', info.address)
    }
  }

  async status (): Promise<SettlementStatus> {
    return { chain: this.chain.name, wallet: await this.walletStatus(), channels: this.channelsStatus() }
  }

  /**
   * The wallet, read from the chain at most every `maxAgeMs`: /status is polled,
   * and a real network's API limits requests (toncenter: 1 a second without a key).
   * Sends elsewhere (opens, closes) make a cached balance stale for up to that long.
   */
  private async wallet (maxAgeMs = WALLET_CACHE_MS): Promise<WalletInfo> {
    const cached = this.walletCache
    if (cached != null && Date.now() - cached.atMs < maxAgeMs) return cached.info
    const info = await this.chain.wallet()
    this.walletCache = { info, atMs: Date.now() }
    return info
  }

  /** For the operator's wallet command fresh (`maxAgeMs` 0); for the polled /status from the cache. */
  private async walletStatus (maxAgeMs = WALLET_CACHE_MS): Promise<SettlementStatus['wallet']> {
    try {
      const info = await this.wallet(maxAgeMs)
      return { address: info.address, balance: info.balance.toString(), deployed: info.deployed }
    } catch (err) {
      return { error: (err as Error).message }
    }
  }

  private channelsStatus (): SettlementStatus['channels'] {
    return this.manager.list().map(c => {
      const { latest, both } = channelAmounts(c, this.store)
      return {
        address: c.address,
        side: c.side,
        peer: c.peerId,
        status: c.status,
        deposited: c.deposited.toString(),
        seqno: latest?.seqno.toString() ?? null,
        cumulative: latest?.cumulative.toString() ?? null,
        countersigned: both?.cumulative.toString() ?? null
      }
    })
  }
}

/** How long a wallet balance read from the chain is reused for status. */
const WALLET_CACHE_MS = 10_000

function channelAmounts (c: ChannelRecord, store: ChannelStore): { latest?: StoredState, both?: StoredState } {
  return { latest: store.latestState(c.address), both: store.latestBothSigned(c.address) }
}

/** The chain layer names its settings chain.*; a node's config calls them settlement.*. */
const CHAIN_KEYS: Record<string, string> = {
  'chain.name': 'settlement.chain',
  'chain.endpoint': 'settlement.endpoint',
  'chain.apiKey': 'settlement.apiKeyFile',
  'chain.mnemonicFile': 'settlement.mnemonicFile',
  'chain.dataDir': 'dataDir'
}

function asSettlementConfigError (err: unknown): unknown {
  if (!(err instanceof ConfigError)) return err
  const key = CHAIN_KEYS[err.key]
  if (key == null) return err
  return new ConfigError(key, err.message.slice(err.key.length + 2), { cause: err })
}


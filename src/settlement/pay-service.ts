/**
 * `/cocoon/pay/1.0.0`: one request, one answer per stream. The payee side
 * serves terms, open, top-up, sync, update and cooperative close for the channels
 * peers opened to this node; the payer side (the functions below the class)
 * asks. A refused channel or state is answered PAYMENT_REFUSED with the
 * reason; nothing a peer sends can make this node store a state it did not
 * check or sign for less than it was already paid.
 */
import { PAY_DEADLINE_MS, PAY_MAX_FRAME_BYTES, PAY_PROTOCOL } from '../p2p/constants.js'
import { handleRequests, ProtocolError, request } from '../p2p/framing.js'
import { ErrorCode } from '../gen/framing.pb.js'
import { PayRequest, PayResponse } from '../gen/pay.pb.js'
import { ChannelError } from '../errors.js'
import type { ChannelManager, PaymentTerms } from './channel-manager.js'
import type { PayeeChannel } from './channels.js'
import type { ChannelRecord, StoredState } from './types.js'
import type { ProtocolHost } from '../p2p/framing.js'
import type { NodeMetrics } from '../p2p/metrics.js'
import type { ChannelState as WireState, ChannelView } from '../gen/pay.pb.js'
import type { Logger, PeerId } from '@libp2p/interface'

export interface PayServiceInit {
  manager: ChannelManager
  metrics?: NodeMetrics
  log: Logger
}

export class PayService {
  private readonly host: Pick<ProtocolHost, 'handle'> & { unhandle(protocol: string): Promise<void> }
  private readonly init: PayServiceInit

  constructor (host: Pick<ProtocolHost, 'handle'> & { unhandle(protocol: string): Promise<void> }, init: PayServiceInit) {
    this.host = host
    this.init = init
  }

  async start (): Promise<void> {
    await handleRequests(this.host, {
      protocol: PAY_PROTOCOL,
      maxFrameBytes: PAY_MAX_FRAME_BYTES,
      deadlineMs: PAY_DEADLINE_MS,
      request: PayRequest,
      response: PayResponse,
      maxInboundStreams: 8,
      log: this.init.log,
      onError: (code) => { this.init.metrics?.protocolErrors.inc({ protocol: PAY_PROTOCOL, code }) },
      handler: async (req, ctx) => {
        try {
          const answer = await this.answer(ctx.peer.toString(), req)
          // nothing is acknowledged before what it acknowledges is durable
          await this.init.manager.flush()
          return answer
        } catch (err) {
          if (err instanceof ChannelError) throw new ProtocolError(ErrorCode.PAYMENT_REFUSED, err.message)
          throw err
        }
      }
    })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(PAY_PROTOCOL).catch(() => {})
  }

  private async answer (peer: string, req: PayRequest): Promise<Partial<PayResponse>> {
    const manager = this.init.manager
    if (req.terms != null) {
      const t = manager.terms()
      return { terms: { ...t, channelKey: new Uint8Array(t.channelKey) } }
    }
    if (req.open != null) {
      const channel = await manager.acceptOpen(peer, { channel: req.open.channel, channelId: req.open.channelId, payerKey: req.open.payerKey, payerWallet: req.open.payerWallet, disputeWindowS: req.open.disputeWindowS })
      return { channel: view(channel) }
    }
    if (req.topUp != null) {
      const channel = this.own(peer, req.topUp.channel)
      await manager.refreshDeposit(channel.address)
      return { channel: view(channel) }
    }
    if (req.sync != null) {
      const channel = this.own(peer, req.sync.channel)
      const theirs = req.sync.latest
      // the payer may hold a newer state this side never stored (the answer was lost): take it
      if (theirs != null && theirs.payerSignature.length > 0) {
        const mine = channel.latest()
        if (mine == null || theirs.seqno > mine.seqno) channel.accept(fromWire(theirs))
      }
      return { channel: view(channel) }
    }
    if (req.update != null) {
      const state = req.update.state
      if (state == null) throw new ProtocolError(ErrorCode.BAD_REQUEST, `${PAY_PROTOCOL}: an update without a state`)
      const channel = this.own(peer, state.channel)
      const payeeSignature = channel.accept(fromWire(state))
      return { countersign: { channel: state.channel, seqno: state.seqno, payeeSignature: new Uint8Array(payeeSignature) } }
    }
    if (req.close != null) {
      const payeeSignature = manager.acceptClose(peer, req.close)
      return { close: { channel: req.close.channel, payeeSignature: new Uint8Array(payeeSignature) } }
    }
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `${PAY_PROTOCOL}: empty request`)
  }

  private own (peer: string, channel: string): PayeeChannel {
    const end = this.init.manager.payee(channel)
    if (end == null || end.record.peerId !== peer) throw new ChannelError('unknown_channel', `${channel} is not a channel from this peer`)
    return end
  }
}

function view (channel: PayeeChannel): ChannelView {
  const latest = channel.latest()
  return { channel: channel.address, deposited: channel.record.deposited, latest: latest == null ? undefined : toWire(latest), unpaid: channel.unpaid }
}

export function toWire (s: StoredState): WireState {
  return { channel: s.channel, seqno: s.seqno, cumulative: s.cumulative, payerSignature: new Uint8Array(s.payerSignature), payeeSignature: new Uint8Array(s.payeeSignature ?? new Uint8Array(0)) }
}

export function fromWire (s: WireState): { channel: string, seqno: bigint, cumulative: bigint, payerSignature: Uint8Array } {
  return { channel: s.channel, seqno: s.seqno, cumulative: s.cumulative, payerSignature: s.payerSignature }
}

// ---- the payer's side ----

type Host = Pick<ProtocolHost, 'dialProtocol'>

async function ask (host: Host, peer: PeerId, message: Partial<PayRequest>): Promise<PayResponse> {
  return request(host, peer, PAY_PROTOCOL, { request: PayRequest, response: PayResponse }, message, { maxFrameBytes: PAY_MAX_FRAME_BYTES, deadlineMs: PAY_DEADLINE_MS })
}

export async function fetchTerms (host: Host, peer: PeerId): Promise<PaymentTerms> {
  const res = await ask(host, peer, { terms: {} })
  const t = res.terms
  if (t == null) throw new ChannelError('malformed', `${peer.toString()} answered a terms request without terms`)
  if (t.chain !== 'devnet' && t.chain !== 'testnet' && t.chain !== 'mainnet') throw new ChannelError('malformed', `${peer.toString()} settles on an unknown chain ${JSON.stringify(t.chain)}`)
  return { chain: t.chain, networkId: t.networkId, wallet: t.wallet, channelKey: t.channelKey, minDisputeWindowS: t.minDisputeWindowS, minDeposit: t.minDeposit, creditWindow: t.creditWindow }
}

export async function announceOpen (host: Host, peer: PeerId, record: ChannelRecord): Promise<ChannelView> {
  const res = await ask(host, peer, { open: { channel: record.address, channelId: record.channelId, payerKey: new Uint8Array(record.payerKey), payerWallet: record.payer, disputeWindowS: record.disputeWindowS } })
  if (res.channel == null) throw new ChannelError('malformed', `${peer.toString()} did not confirm the channel`)
  return res.channel
}

export async function announceTopUp (host: Host, peer: PeerId, channel: string): Promise<ChannelView> {
  const res = await ask(host, peer, { topUp: { channel } })
  if (res.channel == null) throw new ChannelError('malformed', `${peer.toString()} did not confirm the top-up`)
  return res.channel
}

export async function syncChannel (host: Host, peer: PeerId, channel: string, latest: StoredState | undefined): Promise<ChannelView> {
  const res = await ask(host, peer, { sync: { channel, latest: latest == null ? undefined : toWire(latest) } })
  if (res.channel == null) throw new ChannelError('malformed', `${peer.toString()} did not answer the sync`)
  return res.channel
}

/** Pays `update` outside any job; returns the payee's countersignature. */
export async function sendUpdate (host: Host, peer: PeerId, update: { channel: string, seqno: bigint, cumulative: bigint, payerSignature: Uint8Array }): Promise<Uint8Array> {
  const res = await ask(host, peer, { update: { state: { ...update, payerSignature: new Uint8Array(update.payerSignature), payeeSignature: new Uint8Array(0) } } })
  if (res.countersign == null || res.countersign.channel !== update.channel || res.countersign.seqno !== update.seqno) throw new ChannelError('malformed', `${peer.toString()} did not countersign the update`)
  return res.countersign.payeeSignature
}

export async function requestClose (host: Host, peer: PeerId, proposal: { channel: string, seqno: bigint, cumulative: bigint, payerSignature: Uint8Array }): Promise<Uint8Array> {
  const res = await ask(host, peer, { close: { ...proposal, payerSignature: new Uint8Array(proposal.payerSignature) } })
  if (res.close == null || res.close.channel !== proposal.channel) throw new ChannelError('malformed', `${peer.toString()} did not countersign the close`)
  return res.close.payeeSignature
}

/**
 * The payer's way to a channel: reuse the open one to a peer, or ask the
 * peer's terms over /cocoon/pay, deploy and fund a channel on chain, and
 * announce it. Terms are asked once per peer and kept for a while.
 *
 * A channel is announced again the first time this process uses it (after a
 * restart, or when the first announcement was lost): the payee takes a known
 * channel as a no-op and answers with its latest state, which brings back a
 * countersignature this side may not have stored yet.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { announceOpen, fetchTerms } from './pay-service.js'
import type { ChannelManager, PaymentTerms } from './channel-manager.js'
import type { PayerChannel } from './channels.js'
import type { ProtocolHost } from '../p2p/framing.js'
import type { Logger, PeerId } from '@libp2p/interface'

const TERMS_TTL_MS = 10 * 60_000

export class ChannelOpener {
  private readonly host: Pick<ProtocolHost, 'dialProtocol'>
  private readonly manager: ChannelManager
  private readonly terms = new Map<string, { terms: PaymentTerms, expiresAtMs: number }>()
  private readonly confirmed = new Set<string>()

  private readonly log?: Logger

  constructor (host: Pick<ProtocolHost, 'dialProtocol'>, manager: ChannelManager, log?: Logger) {
    this.host = host
    this.manager = manager
    this.log = log
  }

  /** The open channel this node pays `peer` through, opened now if there is none. */
  async payerFor (peer: string, signal?: AbortSignal): Promise<PayerChannel> {
    const id = peerIdFromString(peer)
    const open = this.manager.payerFor(peer)
    if (open != null && this.confirmed.has(open.address)) return open
    signal?.throwIfAborted()
    let known = this.terms.get(peer)
    if (known == null || known.expiresAtMs <= Date.now()) {
      known = { terms: await fetchTerms(this.host, id), expiresAtMs: Date.now() + TERMS_TTL_MS }
      this.terms.set(peer, known)
    }
    const terms = known.terms
    if (open != null) {
      open.payThreshold = terms.creditWindow / 2n
      await this.announce(id, open)
      return open
    }
    const channel = await this.manager.ensurePayer(peer, terms, async record => {
      await announceOpen(this.host, id, record)
      this.confirmed.add(record.address)
    })
    channel.payThreshold = terms.creditWindow / 2n
    if (!this.confirmed.has(channel.address)) await this.announce(id, channel)
    return channel
  }

  private async announce (peer: PeerId, channel: PayerChannel): Promise<void> {
    const view = await announceOpen(this.host, peer, channel.record)
    this.confirmed.add(channel.address)
    if (view.unpaid > 0n) {
      // not paid blindly: the payee's word is all there is; the operator decides
      this.log?.('%s counts %s nanoTON delivered and unpaid on %s (a job cut short); pay it with cocoon channel pay %s %sn', peer, view.unpaid, channel.address, channel.address, view.unpaid)
    }
    const theirs = view.latest
    const mine = channel.latest()
    if (theirs != null && mine != null && theirs.seqno === mine.seqno && mine.payeeSignature == null && theirs.payeeSignature.length > 0) {
      channel.countersigned(theirs.seqno, theirs.payeeSignature)
    }
  }
}

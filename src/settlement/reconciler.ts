/**
 * The payer's side of keeping both ends of a channel in agreement. A payer
 * stores each state before sending it (so it can never pay less than it
 * signed), but the state may never arrive: the job's stream died, the payee
 * was restarting, the stream was closed before the countersignature came
 * back. The payer's latest state is then ahead of the payee's, and would stay
 * so until the next job on the channel.
 *
 * So a payer re-sends its latest state over `/cocoon/pay` once the channel is
 * quiet (nothing signed for RECONCILE_QUIET_MS) and the latest state has no
 * countersignature; the payee stores it (states only grow) or, holding it
 * already, returns its countersignature. Failures back off per channel.
 * States are cumulative, so re-sending the latest is always safe and covers
 * every earlier one.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import type { ChannelManager } from './channel-manager.js'
import type { PaymentUpdate } from './channels.js'
import type { PeerId } from '@libp2p/interface'

/** A state signed this recently may still be on its way in a job's stream. */
export const RECONCILE_QUIET_MS = 3_000
/** How often channels are checked. */
const RECONCILE_INTERVAL_MS = 2_000
/** After a failed re-send: the first wait, doubling per failure up to the max. */
const RECONCILE_BACKOFF_MS = 5_000
const RECONCILE_BACKOFF_MAX_MS = 5 * 60_000
/** Re-sends in flight at once. */
const RECONCILE_PARALLEL = 4

export interface ReconcilerInit {
  manager: ChannelManager
  /** Sends one state to the payee and returns its countersignature. */
  send: (peer: PeerId, update: PaymentUpdate) => Promise<Uint8Array>
  log: (format: string, ...args: unknown[]) => void
  now?: () => number
  intervalMs?: number
  quietMs?: number
}

export class ChannelReconciler {
  private readonly init: ReconcilerInit
  private readonly now: () => number
  private readonly backoff = new Map<string, { atMs: number, waitMs: number }>()
  private readonly inFlight = new Set<string>()
  private timer?: ReturnType<typeof setInterval>
  /** States brought into agreement since start. */
  reconciled = 0

  constructor (init: ReconcilerInit) {
    this.init = init
    this.now = init.now ?? Date.now
  }

  start (): void {
    this.timer = setInterval(() => { this.check() }, this.init.intervalMs ?? RECONCILE_INTERVAL_MS)
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }

  /** Channels whose latest state the payee has not countersigned, quiet long enough to re-send. */
  due (): string[] {
    const out: string[] = []
    const nowMs = this.now()
    for (const record of this.init.manager.list({ side: 'payer', status: 'open' })) {
      if (this.inFlight.has(record.address)) continue
      const channel = this.init.manager.payer(record.address)
      const latest = channel?.latest()
      if (channel == null || latest == null || latest.payeeSignature != null) continue
      if (nowMs - latest.savedAtMs < (this.init.quietMs ?? RECONCILE_QUIET_MS)) continue
      const wait = this.backoff.get(record.address)
      if (wait != null && nowMs < wait.atMs) continue
      out.push(record.address)
    }
    return out
  }

  /** One pass: re-sends the due channels' latest states (at most RECONCILE_PARALLEL at once). */
  check (): void {
    for (const address of this.due()) {
      if (this.inFlight.size >= RECONCILE_PARALLEL) return
      void this.resend(address)
    }
  }

  async resend (address: string): Promise<void> {
    const channel = this.init.manager.payer(address)
    const latest = channel?.latest()
    if (channel == null || latest == null) return
    this.inFlight.add(address)
    try {
      await channel.flush()
      const update = { channel: latest.channel, seqno: latest.seqno, cumulative: latest.cumulative, payerSignature: latest.payerSignature }
      const payeeSignature = await this.init.send(peerIdFromString(channel.record.peerId), update)
      channel.countersigned(latest.seqno, payeeSignature)
      this.backoff.delete(address)
      this.reconciled++
      this.init.log('channel %s: the payee now holds seqno %s (%s nanoTON)', address, latest.seqno, latest.cumulative)
    } catch (err) {
      const waitMs = Math.min(RECONCILE_BACKOFF_MAX_MS, (this.backoff.get(address)?.waitMs ?? RECONCILE_BACKOFF_MS / 2) * 2)
      this.backoff.set(address, { atMs: this.now() + waitMs, waitMs })
      this.init.log('channel %s: re-sending seqno %s failed, again in %d s - %s', address, latest.seqno, Math.round(waitMs / 1000), (err as Error).message)
    } finally {
      this.inFlight.delete(address)
    }
  }
}

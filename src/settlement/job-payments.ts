/**
 * Paying for one job as it streams, on a channel that may carry several jobs
 * at once. Both ends count the same thing: the completion tokens the worker
 * claims with each sealed frame (authenticated end to end, so a proxy cannot
 * inflate them), priced at the job's completion price; at the end the
 * worker's signed usage settles the exact cost (prompt tokens included),
 * which is never below what was paid while streaming.
 *
 * The payer signs a new state whenever what it owes on the channel and has
 * not paid reaches half the payee's credit window (and at the end of each
 * job); the payee delivers a frame only while its unpaid credit on the
 * channel stays within the window (or nothing is unpaid), so a payer that
 * stops paying costs it at most about one window, and a payer that pays
 * never waits.
 */
import { ChannelError } from '../errors.js'
import { ProtocolError } from '../p2p/framing.js'
import { ErrorCode } from '../gen/framing.pb.js'
import { costOf } from './pricing.js'
import type { ChannelManager } from './channel-manager.js'
import type { PayeeChannel, PayerChannel, PaymentUpdate } from './channels.js'
import type { ModelPrice } from './pricing.js'
import type { Usage } from '../inference/types.js'
import type { HopPayee, HopPayer } from '../jobs/payments.js'
import { WakeUp } from '../ops/wake-up.js'

/** What streaming has established so far: completion tokens only, prompt tokens come with the final usage. */
function streamingCost (completionTokens: number, price: ModelPrice): bigint {
  return costOf({ promptTokens: 0, cachedTokens: 0, completionTokens, reasoningTokens: 0 }, price)
}

/** The most completion tokens that `creditWindow` covers at `price` (at least one). */
function frameTokensFor (creditWindow: bigint, price: ModelPrice): number {
  if (price.completionPerM <= 0n) return Number.MAX_SAFE_INTEGER
  const n = creditWindow * 1_000_000n / price.completionPerM
  return n < 1n ? 1 : n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n)
}

/** The payer's side of one job. */
export class JobPayer implements HopPayer {
  readonly end: PayerChannel
  readonly price: ModelPrice
  private due = 0n

  constructor (end: PayerChannel, price: ModelPrice) {
    this.end = end
    this.price = price
  }

  get channel (): string {
    return this.end.address
  }

  countersigned (seqno: bigint, payeeSignature: Uint8Array): void {
    this.end.countersigned(seqno, payeeSignature)
  }

  /** What this job has cost so far, nanoTON. */
  get cost (): bigint {
    return this.due
  }

  /** A frame arrived claiming `completionTokens` so far: the update to send now, or null when none is due yet. */
  async onTokens (completionTokens: number): Promise<PaymentUpdate | null> {
    const update = this.end.owe(this.increase(streamingCost(completionTokens, this.price)))
    if (update != null) await this.end.flush()
    return update
  }

  /**
   * The signed final usage arrived: the update settling everything owed
   * (this job at its exact cost), or the latest state again when that is
   * already paid, marked as this job's settlement.
   */
  async onFinal (usage: Usage): Promise<PaymentUpdate | null> {
    this.end.owe(this.increase(costOf(usage, this.price)))
    const update = this.end.settle() ?? this.latestUpdate()
    if (update == null) return null
    await this.end.flush()
    return { ...update, settles: true }
  }

  private latestUpdate (): PaymentUpdate | null {
    const latest = this.end.latest()
    return latest == null ? null : { channel: this.end.address, seqno: latest.seqno, cumulative: latest.cumulative, payerSignature: latest.payerSignature }
  }

  private increase (total: bigint): bigint {
    if (total <= this.due) return 0n
    const delta = total - this.due
    this.due = total
    return delta
  }
}

/** How long a payee waits for the payer: for the credit a frame needs, and for the settlement after the end. */
export interface PayeeWaits {
  /** How long a frame waits for the payment that lets it out before the job stops with PAYMENT_REQUIRED. */
  paymentWaitMs: number
  /** After the final result: how long to wait for the payment that settles the job. */
  settleWaitMs: number
}

/** The payee's side of one job. */
export class JobPayee implements HopPayee {
  readonly end: PayeeChannel
  readonly price: ModelPrice
  readonly creditWindow: bigint
  readonly waits: PayeeWaits
  private earned = 0n
  private frameTokensOnce: number | undefined
  private finalized = false
  private paidAfterFinal = false
  private payerDone = false
  /** Woken by every payment, and by the payer ending its side. */
  private readonly paid = new WakeUp()

  constructor (end: PayeeChannel, price: ModelPrice, creditWindow: bigint, waits: PayeeWaits = { paymentWaitMs: 0, settleWaitMs: 0 }) {
    this.end = end
    this.price = price
    this.creditWindow = creditWindow
    this.waits = waits
  }

  get channel (): string {
    return this.end.address
  }

  get unpaid (): bigint {
    return this.end.unpaid
  }

  get cost (): bigint {
    return this.earned
  }

  get frameTokens (): number {
    this.frameTokensOnce ??= frameTokensFor(this.creditWindow, this.price)
    return this.frameTokensOnce
  }

  /**
   * Whether a frame bringing the job to `completionTokens` may go out now:
   * when it stays within the credit window, or when nothing is unpaid (one
   * frame of credit, so a window smaller than a frame cannot stall a job).
   */
  mayDeliver (completionTokens: number): boolean {
    const delta = streamingCost(completionTokens, this.price) - this.earned
    return delta <= 0n || this.end.unpaid === 0n || this.end.mayDeliver(delta, this.creditWindow)
  }

  /** Counts a delivered frame. */
  delivered (completionTokens: number): void {
    this.earnUpTo(streamingCost(completionTokens, this.price))
  }

  /** Counts the final usage; returns the job's exact cost. */
  final (usage: Usage): bigint {
    this.earnUpTo(costOf(usage, this.price))
    this.finalized = true
    return this.earned
  }

  /**
   * Checks and stores a payment, returning the countersignature; null for a
   * state a newer one already superseded (it was overtaken by the payer's
   * re-send of its latest state, or by another job's payment on the channel):
   * nothing to store or answer, and no reason to stop the job.
   */
  async accept (update: PaymentUpdate): Promise<Uint8Array | null> {
    if (update.channel !== this.end.address) throw new ChannelError('wrong_channel', `a payment for ${update.channel} arrived on a job paid through ${this.end.address}`)
    const latest = this.end.latest()
    if (latest != null && update.seqno < latest.seqno && update.cumulative <= latest.cumulative) {
      // the payer's settlement counts even where a newer state (another job's) overtook it
      if (this.finalized && update.settles === true && this.end.signedByPayer(update)) this.paidAfterFinal = true
      this.paid.wake()
      return null
    }
    // a payer pays for what it received: a state beyond what was delivered plus the window is one this side cannot account for
    const countersignature = this.end.accept(update, this.end.earned + this.creditWindow)
    // credit counts, and the countersignature goes out, only once the state is durable
    await this.end.flush()
    if (this.finalized && update.settles === true) this.paidAfterFinal = true
    this.paid.wake()
    return countersignature
  }

  /** The payer ended its side after the final result: it has nothing more to pay. */
  payerEnded (): void {
    this.payerDone = true
    this.paid.wake()
  }

  /**
   * Holds a frame claiming `tokens` until the payer's credit lets it out, at
   * most `waits.paymentWaitMs`; then throws PAYMENT_REQUIRED.
   */
  async awaitCredit (tokens: number, signal: AbortSignal): Promise<void> {
    const giveUpAt = performance.now() + this.waits.paymentWaitMs
    while (!this.mayDeliver(tokens)) {
      const left = giveUpAt - performance.now()
      if (left <= 0) {
        throw new ProtocolError(ErrorCode.PAYMENT_REQUIRED, `payment fell behind: ${this.end.unpaid} nanoTON unpaid, over the ${this.creditWindow} nanoTON credit window`)
      }
      await this.paid.wait(left, signal)
    }
  }

  /**
   * Waits, at most `waits.settleWaitMs`, for the payment that settles this
   * finished job; stops early when the payer ended its side. False when the
   * job is left unpaid beyond the credit window.
   */
  async awaitSettled (signal: AbortSignal): Promise<boolean> {
    const giveUpAt = performance.now() + this.waits.settleWaitMs
    while (!this.settled()) {
      if (this.payerDone) return this.end.unpaid <= this.creditWindow
      const left = giveUpAt - performance.now()
      if (left <= 0 || signal.aborted) return false
      await this.paid.wait(left, signal).catch(() => {})
    }
    return true
  }

  /**
   * True once the payer's settlement of this job arrived (the payment it
   * marks `settles`, sent after it checked the final result; payments it
   * sent earlier may still arrive after the final and do not count), or
   * nothing on the channel is unpaid. Other jobs' frames still in flight on
   * the channel do not hold this one up.
   */
  settled (): boolean {
    return this.paidAfterFinal || this.end.unpaid === 0n
  }

  private earnUpTo (total: bigint): void {
    if (total > this.earned) {
      this.end.earn(total - this.earned)
      this.earned = total
    }
  }
}

/**
 * The channel a job names, as its payee sees it: open and the requester's
 * own, or none for an unpaid job where unpaid jobs are taken. Throws
 * ProtocolError (PAYMENT_REQUIRED, PAYMENT_REFUSED) naming what to do.
 */
export function jobChannel (manager: ChannelManager | undefined, required: boolean, channel: string, requester: string, self: 'proxy' | 'worker'): PayeeChannel | undefined {
  const of = self === 'proxy' ? 'client' : 'proxy'
  if (channel === '') {
    if (required) throw new ProtocolError(ErrorCode.PAYMENT_REQUIRED, `this ${self} takes paid jobs only: open a channel over /cocoon/pay and name it in the job`)
    return undefined
  }
  if (manager == null) throw new ProtocolError(ErrorCode.PAYMENT_REFUSED, `this ${self} runs without settlement and takes no payments`)
  const end = manager.payee(channel)
  if (end == null || end.record.peerId !== requester || end.record.status !== 'open') {
    throw new ProtocolError(ErrorCode.PAYMENT_REQUIRED, `${channel} is not an open channel from this ${of}; open one over /cocoon/pay`)
  }
  return end
}

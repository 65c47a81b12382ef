/**
 * The two ends of an open channel, off chain. Every state is written to the
 * durable store before it is handed to the other side or acted on: the payer
 * stores a state before sending it, the payee stores it before countersigning
 * and before delivering what it pays for. The methods here store; callers
 * `flush()` before sending (a browser's store commits asynchronously).
 *
 * Credit: the payee delivers (tokens, forwarded chunks) ahead of payment only
 * while what it earned minus what it was paid stays within `creditWindow`, so
 * a payer that stops paying costs it at most one window.
 */
import { CLOSE_RESERVE } from '../../contracts/payment-channel.js'
import { equals } from 'uint8arrays/equals'
import { ChannelError } from '../errors.js'
import { checkStateSignature, signState } from './channel-state.js'
import type { ChannelKey } from './channel-key.js'
import type { HopPayment } from '../jobs/payments.js'
import type { ChannelRecord, ChannelStore, StoredState } from './types.js'

/** The most a payer may ever owe on a channel: the deposit less what a close keeps for fees. */
export function spendable (record: ChannelRecord): bigint {
  const max = record.deposited - CLOSE_RESERVE
  return max > 0n ? max : 0n
}

/** A payer's update, as it travels to the payee. */
/** A payer-signed state on its way to the payee (on a job stream, possibly marked as the job's settlement). */
export type PaymentUpdate = HopPayment

abstract class ChannelEnd {
  protected readonly store: ChannelStore
  protected readonly key: ChannelKey
  private current: ChannelRecord

  constructor (record: ChannelRecord, store: ChannelStore, key: ChannelKey) {
    this.current = record
    this.store = store
    this.key = key
  }

  get record (): ChannelRecord {
    return this.current
  }

  get address (): string {
    return this.current.address
  }

  /** Highest state either side signed, as stored. */
  latest (): StoredState | undefined {
    return this.store.latestState(this.address)
  }

  /** Highest state both sides signed: what a unilateral close would use. */
  latestBothSigned (): StoredState | undefined {
    return this.store.latestBothSigned(this.address)
  }

  /** Resolves once every state this side stored so far is durable: send or act on a state only after it. */
  async flush (): Promise<void> {
    await this.store.flush()
  }

  /** Records a new deposit total or status (after a top-up or close on chain). */
  update (changes: Partial<Pick<ChannelRecord, 'deposited' | 'status'>>): void {
    const next = { ...this.current, ...changes, updatedAtMs: Date.now() }
    this.store.putChannel(next)
    this.current = next
  }

  protected requireOpen (): void {
    if (this.current.status !== 'open') throw new ChannelError('not_open', `${this.address} is ${this.current.status}`)
  }
}

/**
 * How far one state may move a channel's seqno forward. A payer signs one
 * state per payment, so only states lost on the way make a gap; a larger
 * jump (up to 2^64 - 1) would pin the channel, since no later honest state
 * could be newer.
 */
export const MAX_SEQNO_STEP = 1024n

/** Signed states kept in memory to match countersignatures that arrive after newer states were signed. */
const RECENT_STATES = 64

export class PayerChannel extends ChannelEnd {
  /**
   * A new state is signed once this much is owed and not yet paid; half the
   * payee's credit window keeps it streaming without waiting, with a state
   * per window rather than per token. 0: a state for every increment.
   */
  payThreshold = 0n
  private owedNanoTon: bigint | undefined
  private readonly recent = new Map<bigint, StoredState>()

  /** What the jobs on this channel have cost so far (paid or not). */
  get owed (): bigint {
    return this.owedNanoTon ?? this.paid
  }

  /**
   * Adds `delta` to what this channel owes (jobs sharing it each add their
   * own increments); returns a new signed state when the unpaid part reached
   * the threshold, else null.
   */
  owe (delta: bigint): PaymentUpdate | null {
    if (delta < 0n) throw new RangeError('cannot owe a negative amount')
    this.owedNanoTon = this.owed + delta
    return this.owed - this.paid >= this.payThreshold && this.owed > this.paid ? this.payUpTo(this.owed) : null
  }

  /** Pays everything owed now (at the end of a job); null when nothing is unpaid. */
  settle (): PaymentUpdate | null {
    return this.owed > this.paid ? this.payUpTo(this.owed) : null
  }

  /** Cumulative amount signed so far. */
  get paid (): bigint {
    return this.latest()?.cumulative ?? 0n
  }

  /** What may still be paid before the deposit runs out. */
  get remaining (): bigint {
    return spendable(this.record) - this.paid
  }

  /**
   * Signs and durably stores a state that brings the total paid to
   * `cumulative`; returns the update to send. Paying no more than already
   * signed returns the latest update again (a retransmission, no new state).
   */
  payUpTo (cumulative: bigint): PaymentUpdate {
    this.requireOpen()
    const latest = this.latest()
    if (latest != null && cumulative <= latest.cumulative) return toUpdate(latest)
    if (cumulative > spendable(this.record)) {
      throw new ChannelError('overspent', `paying ${cumulative} nanoTON in all would exceed the ${spendable(this.record)} nanoTON ${this.address} can pay out; top it up`)
    }
    const state = { channel: this.address, seqno: (latest?.seqno ?? 0n) + 1n, cumulative }
    const stored: StoredState = { ...state, payerSignature: signState(this.key, this.record, state), payeeSignature: null, savedAtMs: Date.now() }
    this.store.saveState(stored)
    this.recent.set(stored.seqno, stored)
    if (this.recent.size > RECENT_STATES) this.recent.delete(this.recent.keys().next().value as bigint)
    return toUpdate(stored)
  }

  /**
   * Takes the payee's countersignature of a state this side signed. One for
   * an older state (newer ones were signed meanwhile) still moves the
   * both-signed state forward; one for a state this side never signed is
   * refused.
   */
  countersigned (seqno: bigint, payeeSignature: Uint8Array): StoredState | undefined {
    const latest = this.latest()
    if (latest == null || seqno > latest.seqno) throw new ChannelError('stale_state', `no state with seqno ${seqno} was signed on ${this.address}`)
    const both = this.latestBothSigned()
    if (both != null && seqno <= both.seqno) return both
    const state = seqno === latest.seqno ? latest : this.recent.get(seqno)
    // an old state from before a restart: a newer countersignature will come
    if (state == null) return both
    checkStateSignature(this.record, state, 'payee', payeeSignature)
    const signed = { ...state, payeeSignature: new Uint8Array(payeeSignature), savedAtMs: Date.now() }
    if (seqno === latest.seqno) this.store.saveState(signed)
    else this.store.saveBothSigned(signed)
    for (const s of this.recent.keys()) if (s <= seqno) this.recent.delete(s)
    return signed
  }
}

export class PayeeChannel extends ChannelEnd {
  private earnedNanoTon: bigint

  constructor (record: ChannelRecord, store: ChannelStore, key: ChannelKey) {
    super(record, store, key)
    // after a restart, what was earned before is taken as paid: only new deliveries count
    this.earnedNanoTon = this.received
  }

  /** Cumulative amount the payer signed over. */
  get received (): bigint {
    return this.latest()?.cumulative ?? 0n
  }

  /** What the payer owes for what was delivered and not yet paid. */
  get unpaid (): bigint {
    const owed = this.earnedNanoTon - this.received
    return owed > 0n ? owed : 0n
  }

  /** What was delivered on this channel since this process started, plus what was paid before it (nanoTON). */
  get earned (): bigint {
    return this.earnedNanoTon
  }

  /** Counts `amount` as delivered (earned, to be paid). */
  earn (amount: bigint): void {
    if (amount < 0n) throw new RangeError('cannot earn a negative amount')
    this.earnedNanoTon += amount
  }

  /** Whether delivering `amount` more keeps the unpaid credit within `window`. */
  mayDeliver (amount: bigint, window: bigint): boolean {
    return this.earnedNanoTon + amount - this.received <= window
  }

  /** Whether the payer signed `update` (a state this side need not store, e.g. one a newer one superseded). */
  signedByPayer (update: PaymentUpdate): boolean {
    try {
      checkStateSignature(this.record, { channel: update.channel, seqno: update.seqno, cumulative: update.cumulative }, 'payer', update.payerSignature)
      return true
    } catch {
      return false
    }
  }

  /**
   * Checks a payer's update and durably stores it with this side's
   * countersignature, which it returns. A repeat of the latest state is
   * countersigned again; an older one, another channel's, one over the
   * deposit or over `maxCumulative` (what was delivered plus the credit
   * window, on a job), one that jumps the seqno by more than
   * MAX_SEQNO_STEP, or a bad signature throws ChannelError and stores
   * nothing.
   */
  accept (update: PaymentUpdate, maxCumulative?: bigint): Uint8Array {
    this.requireOpen()
    if (update.channel !== this.address) throw new ChannelError('wrong_channel', `an update for ${update.channel} arrived on ${this.address}`)
    const latest = this.latest()
    if (latest != null && update.seqno === latest.seqno && update.cumulative === latest.cumulative && latest.payeeSignature != null) {
      // ed25519 signatures are deterministic: a true repeat carries the very bytes stored
      if (!equals(update.payerSignature, latest.payerSignature)) throw new ChannelError('bad_signature', `a repeat of state ${update.seqno} on ${this.address} carries another signature`)
      return latest.payeeSignature
    }
    if (latest != null && update.seqno <= latest.seqno) throw new ChannelError('stale_state', `seqno ${update.seqno} is not newer than ${latest.seqno} on ${this.address}`)
    if (latest != null && update.cumulative < latest.cumulative) throw new ChannelError('decreasing', `cumulative ${update.cumulative} is below the ${latest.cumulative} already paid on ${this.address}`)
    const from = latest?.seqno ?? 0n
    if (update.seqno - from > MAX_SEQNO_STEP) {
      throw new ChannelError('seqno_jump', `seqno ${update.seqno} jumps more than ${MAX_SEQNO_STEP} past ${from} on ${this.address}`)
    }
    if (maxCumulative != null && update.cumulative > maxCumulative) {
      throw new ChannelError('overpaid', `cumulative ${update.cumulative} is more than the ${maxCumulative} nanoTON delivered and credited on ${this.address}`)
    }
    if (update.cumulative > spendable(this.record)) {
      throw new ChannelError('overspent', `cumulative ${update.cumulative} exceeds the ${spendable(this.record)} nanoTON ${this.address} can pay out`)
    }
    const state = { channel: update.channel, seqno: update.seqno, cumulative: update.cumulative }
    checkStateSignature(this.record, state, 'payer', update.payerSignature)
    const payeeSignature = signState(this.key, this.record, state)
    this.store.saveState({ ...state, payerSignature: new Uint8Array(update.payerSignature), payeeSignature, savedAtMs: Date.now() })
    return payeeSignature
  }
}

function toUpdate (s: StoredState): PaymentUpdate {
  return { channel: s.channel, seqno: s.seqno, cumulative: s.cumulative, payerSignature: s.payerSignature }
}

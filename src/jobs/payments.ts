/**
 * How payments enter a hop: the one small interface each side of a paid job
 * sees. The hop never touches a channel; the settlement layer implements
 * these (`JobPayer`, `JobPayee` in `settlement/job-payments.ts`).
 *
 * Both ends count the same thing: the completion tokens the worker sealed
 * into each frame (so no hop can inflate them), and at the end the worker's
 * signed usage.
 */
import type { Usage } from '../inference/types.js'

/** A payer-signed channel state, as it travels up a job stream. */
export interface HopPayment {
  channel: string
  seqno: bigint
  /** nanoTON owed in all on the channel. */
  cumulative: bigint
  payerSignature: Uint8Array
  /** The payer's last payment for this job, sent once it checked the final result. */
  settles?: boolean
}

/** The requester's side: pays the next hop as frames arrive; a payment it returns is durably stored. */
export interface HopPayer {
  /** The channel this job is paid through. */
  readonly channel: string
  /** What this job has cost so far, nanoTON. */
  readonly cost: bigint
  /** A frame arrived claiming `tokens` completion tokens so far: the signed payment to send now, or null when none is due. */
  onTokens(tokens: number): Promise<HopPayment | null>
  /**
   * The signed final usage arrived: the payment settling the job (a new
   * state when something is unpaid, else the latest one again, so the payee
   * knows the payer is done); null only when the channel has no state yet.
   */
  onFinal(usage: Usage): Promise<HopPayment | null>
  /** The payee's countersignature of a state we sent. */
  countersigned(seqno: bigint, payeeSignature: Uint8Array): void
}

/** The server's side: is paid by the requester and delivers only within its credit. */
export interface HopPayee {
  readonly channel: string
  /** nanoTON delivered on the channel and not yet paid (all its jobs). */
  readonly unpaid: bigint
  /**
   * Checks and durably stores a payment; returns the countersignature, or null for a
   * state a newer one already superseded. Throws ChannelError for a payment
   * it refuses. One marked `settles` after the final result settles the job.
   */
  accept(payment: HopPayment): Promise<Uint8Array | null>
  /**
   * The most completion tokens one frame may add: a frame within it never
   * takes the unpaid credit past the window, so a sender that can split its
   * output (the worker) keeps its frames this small.
   */
  readonly frameTokens: number
  /** Waits (bounded) until a frame bringing the job to `tokens` may go out; throws ProtocolError(PAYMENT_REQUIRED) when it may not. */
  awaitCredit(tokens: number, signal: AbortSignal): Promise<void>
  /** A frame claiming `tokens` went out. */
  delivered(tokens: number): void
  /** Counts the signed final usage; returns the job's exact cost. */
  final(usage: Usage): bigint
  /** Waits (bounded) for the payment that settles the finished job; false when it is left unpaid beyond the credit window. */
  awaitSettled(signal: AbortSignal): Promise<boolean>
  /** The payer ended its side after the final result: nothing more will come. */
  payerEnded(): void
}

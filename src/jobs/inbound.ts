/**
 * The inbound hop: the serving side of a job stream (the proxy for a
 * client's `/cocoon/job`, the worker for a proxy's `/cocoon/work`). The role
 * reads the request and decides what to do; the hop does the rest, once for
 * every role:
 *
 * - watches the requester's side: a payment is checked, stored and
 *   countersigned back; a JobCancel, the requester closing its side before
 *   the end, or a reset cancel the job at once;
 * - sends a chunk only within the requester's credit (waiting, bounded, for
 *   the payment that lets it out; PAYMENT_REQUIRED after that);
 * - after the final result, waits (bounded) for the settling payment, then
 *   closes;
 * - answers a failure with its error frame, or resets the stream for a cancel.
 *
 * A requester that can no longer be written to has gone: that cancels the
 * job too (it is never the serving side's fault).
 */
import { ChannelError } from '../errors.js'
import { InferenceError } from '../inference/types.js'
import { answerWithError, ErrorCode, ProtocolError } from '../p2p/framing.js'
import { JOB_SETUP_DEADLINE_MS } from '../p2p/constants.js'
import { JobUpstream } from '../gen/job.pb.js'
import { JobLifecycle } from './lifecycle.js'
import { SerialWriter } from './serial-writer.js'
import type { HopPayee } from './payments.js'
import type { FramedStream, MessageCodec } from '../p2p/framing.js'
import type { Countersign, Payment, SealedChunk } from '../gen/job.pb.js'

/** What a serving side sends besides its own final event: chunks and countersignatures. */
/** After the final result: how long the requester's remaining payments and its close may take. */
const AFTER_FINAL_READ_MS = 10_000

export interface InboundEvents {
  countersign?: Countersign
  chunk?: SealedChunk
}

export interface InboundHopInit<E extends InboundEvents> {
  framed: FramedStream
  /** The codec of the events this side sends (JobEvent, WorkEvent). */
  events: MessageCodec<E>
  /** The job's controller: aborted on a cancel, a refused payment, a requester gone. */
  controller: AbortController
  /** Who sends the job, for messages: "client", "proxy". */
  requester: string
  /** A frame waited for credit in vain, or the job ended unpaid beyond the window. */
  onUnpaid?: (what: 'credit' | 'settlement') => void
}

export class InboundHop<E extends InboundEvents> {
  readonly lifecycle = new JobLifecycle()
  private readonly init: InboundHopInit<E>
  private readonly writer = new SerialWriter()
  private payeeEnd: HopPayee | undefined
  private paid = false
  private cancelAt = 0

  constructor (init: InboundHopInit<E>) {
    this.init = init
  }

  /** The requester's side of this job's payments; undefined for an unpaid job (or before routing). */
  get payee (): HopPayee | undefined {
    return this.payeeEnd
  }

  /** Epoch ms the requester's cancel arrived; 0 when it did not cancel. */
  get cancelledAtMs (): number {
    return this.cancelAt
  }

  /** The job names a channel (known once the header is read): payments are expected once it is routed. */
  setPaid (paid: boolean): void {
    this.paid = paid
  }

  /** Sets who pays this job (the proxy sets it when it routes, since the price is the worker's). */
  setPayee (payee: HopPayee | undefined): void {
    this.payeeEnd = payee
  }

  /** Marks the job routed to a worker (client ↔ proxy). */
  routed (): void {
    this.lifecycle.to('routed')
  }

  /**
   * From now on the requester's side carries payments and a cancel; `idleMs`
   * bounds how long it may stay silent (the job's deadline plus the wait for
   * its settlement).
   */
  watch (idleMs: number): void {
    const { framed, controller } = this.init
    // Reading stops with the job, unless a paid job finished: its last
    // payments still arrive after the final result, and they count.
    const reading = new AbortController()
    controller.signal.addEventListener('abort', () => { if (!this.lifecycle.finished || this.payeeEnd == null) reading.abort(controller.signal.reason) }, { once: true })
    void (async () => {
      try {
        while (true) {
          const deadlineMs = this.lifecycle.finished ? Math.min(idleMs, AFTER_FINAL_READ_MS) : idleMs
          const message = await framed.readOrEnd(JobUpstream, { signal: reading.signal, deadlineMs })
          if (message?.payment == null) break
          try {
            await this.takePayment(message.payment)
          } catch (err) {
            if (this.lifecycle.finished) break
            if (!controller.signal.aborted) controller.abort(err instanceof ChannelError ? new ProtocolError(ErrorCode.PAYMENT_REFUSED, err.message) : err)
            return
          }
        }
      } catch {
        // a reset or silence past the deadline: the same as a cancel (or, after the final result, as the requester's close)
      }
      if (this.lifecycle.finished) {
        // after the final result, the requester closing its side is the end of a paid job, not a cancel
        this.payeeEnd?.payerEnded()
        // a requester that never closed after the final result (and its last payments) is cut off; one we stopped reading is left to close
        if (!reading.signal.aborted && this.lifecycle.state === 'closed' && framed.stream.status !== 'closed') framed.abort(new Error('job ended'))
        return
      }
      if (controller.signal.aborted) return
      this.cancelAt = Date.now()
      controller.abort(new InferenceError('cancelled', `the ${this.init.requester} cancelled the job`))
    })()
  }

  /** Sends an event; a requester that cannot be written to has gone, which cancels the job. */
  async send (event: Partial<E>): Promise<void> {
    const { framed, controller } = this.init
    try {
      await this.writer.run(async () => framed.write(this.init.events, event, { signal: controller.signal }))
    } catch (err) {
      if (!controller.signal.aborted) controller.abort(new InferenceError('cancelled', `the ${this.init.requester} went away`, { cause: err }))
      throw controller.signal.reason
    }
  }

  /**
   * Sends a chunk claiming `tokens` completion tokens so far, once the
   * requester's credit allows it; `make` builds it then (the worker seals it
   * only when it may go).
   */
  async sendChunk (tokens: number, make: () => SealedChunk): Promise<void> {
    const payee = this.payeeEnd
    if (payee != null) {
      try {
        await payee.awaitCredit(tokens, this.init.controller.signal)
      } catch (err) {
        if (err instanceof ProtocolError) this.init.onUnpaid?.('credit')
        throw err
      }
    }
    this.lifecycle.tryTo('streaming')
    await this.send({ chunk: make() } as Partial<E>)
    payee?.delivered(tokens)
  }

  /**
   * Sends the final event, waits (bounded) for the payment that settles the
   * job, and closes. False when the job ended unpaid beyond the credit window.
   */
  async finish (final: Partial<E>): Promise<boolean> {
    this.lifecycle.to('final')
    await this.send(final)
    let settled = true
    const payee = this.payeeEnd
    if (payee != null && !(await payee.awaitSettled(this.init.controller.signal))) {
      settled = false
      this.init.onUnpaid?.('settlement')
    }
    await this.writer.run(async () => this.init.framed.close({ signal: AbortSignal.timeout(JOB_SETUP_DEADLINE_MS) })).catch(() => {})
    this.lifecycle.to('closed')
    return settled
  }

  /**
   * Ends a job that did not finish: a cancel resets the stream (and returns
   * undefined); anything else is answered with its error frame, which is
   * returned for the role's counts and logs. `toAnswer` says what a failure
   * is on this protocol; the controller's reason, when it aborted, wins over
   * `err`.
   */
  async fail (err: unknown, toAnswer: (reason: unknown) => ProtocolError): Promise<ProtocolError | undefined> {
    const { framed, controller } = this.init
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : err
    if (reason instanceof InferenceError && reason.code === 'cancelled') {
      this.lifecycle.tryTo('cancelled')
      framed.abort(new Error('cancelled'))
      return undefined
    }
    const answer = toAnswer(reason)
    this.lifecycle.tryTo('failed')
    await answerWithError(framed, answer.errorCode, answer)
    return answer
  }

  /** A requester's payment: checked, stored, countersigned back. */
  private async takePayment (payment: Payment): Promise<void> {
    const payee = this.payeeEnd
    // nothing is owed before the job is routed and a frame went out
    if (payee == null) throw new ProtocolError(ErrorCode.PAYMENT_REFUSED, this.paid ? 'nothing is owed before the first chunk' : 'this job is not paid through a channel')
    const payeeSignature = await payee.accept(payment)
    if (payeeSignature == null) return
    const countersign = { countersign: { channel: payment.channel, seqno: payment.seqno, payeeSignature: new Uint8Array(payeeSignature) } } as Partial<E>
    if (this.lifecycle.finished) {
      // the state is stored either way; after our close the payer gets the countersignature when it syncs
      if (this.lifecycle.state !== 'closed') await this.writer.run(async () => this.init.framed.write(this.init.events, countersign)).catch(() => {})
      return
    }
    await this.send(countersign)
  }
}

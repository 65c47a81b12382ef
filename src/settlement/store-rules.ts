/**
 * The rules every channel store applies to a state before storing it, shared
 * by the SQLite store (Node) and the IndexedDB store (browsers) so both
 * refuse and keep exactly the same things. Each store keeps two slots per
 * channel: the latest state (highest seqno, perhaps signed by the payer
 * only) and the latest both-signed one. The functions here are pure: given
 * what is stored, they return what to write or throw ChannelError.
 */
import { equals } from 'uint8arrays/equals'
import { ChannelError, ChannelStoreError } from '../errors.js'
import type { ChannelRecord, StoredState } from './types.js'

export type Slot = 'latest' | 'both'

/** One slot to overwrite. */
export interface SlotWrite {
  slot: Slot
  state: StoredState
}

export const SIGNATURE_BYTES = 64

/** Refuses a state that cannot be a valid one before anything is read or written. */
export function checkShape (state: StoredState): void {
  const bad = (detail: string): never => { throw new ChannelError('malformed', `state ${state.seqno} on ${state.channel}: ${detail}`) }
  if (typeof state.seqno !== 'bigint' || state.seqno < 0n) bad('seqno must be a non-negative bigint')
  if (typeof state.cumulative !== 'bigint' || state.cumulative < 0n) bad('cumulative must be a non-negative bigint')
  if (!(state.payerSignature instanceof Uint8Array) || state.payerSignature.length !== SIGNATURE_BYTES) bad(`the payer signature must be ${SIGNATURE_BYTES} bytes`)
  if (state.payeeSignature != null && (!(state.payeeSignature instanceof Uint8Array) || state.payeeSignature.length !== SIGNATURE_BYTES)) {
    bad(`the payee signature must be ${SIGNATURE_BYTES} bytes`)
  }
}

/** Checks a countersigned state for `saveBothSigned` before it reaches a store. */
export function checkBothSignedShape (state: StoredState): void {
  checkShape(state)
  if (state.payeeSignature == null) throw new ChannelError('malformed', `seqno ${state.seqno} on ${state.channel} carries no payee signature`)
}

/**
 * What `saveState` writes: a higher seqno replaces the latest state (and the
 * both-signed one when countersigned); the same seqno with the same amount
 * and signatures may add the payee's signature; anything else is refused.
 */
export function planSave (state: StoredState, latest: StoredState | undefined): SlotWrite[] {
  const { channel, seqno, cumulative } = state
  let next = state
  if (latest != null) {
    if (seqno < latest.seqno) throw new ChannelError('stale_state', `seqno ${seqno} on ${channel} is older than the stored ${latest.seqno}`)
    if (seqno === latest.seqno) {
      if (cumulative !== latest.cumulative) {
        throw new ChannelError('stale_state', `seqno ${seqno} on ${channel} is stored with ${latest.cumulative} nanoTON, not ${cumulative}`)
      }
      if (!equals(state.payerSignature, latest.payerSignature) ||
          (state.payeeSignature != null && latest.payeeSignature != null && !equals(state.payeeSignature, latest.payeeSignature))) {
        throw new ChannelError('stale_state', `seqno ${seqno} on ${channel} is stored with other signatures`)
      }
      // a re-save without the payee's signature must not drop the one stored
      if (state.payeeSignature == null || latest.payeeSignature != null) return []
      next = { ...latest, payeeSignature: state.payeeSignature, savedAtMs: state.savedAtMs }
    } else if (cumulative < latest.cumulative) {
      throw new ChannelError('decreasing', `seqno ${seqno} on ${channel} pays ${cumulative} nanoTON, less than the ${latest.cumulative} already signed`)
    }
  }
  const writes: SlotWrite[] = [{ slot: 'latest', state: next }]
  if (next.payeeSignature != null) writes.push({ slot: 'both', state: next })
  return writes
}

/**
 * What `saveBothSigned` writes: a countersignature of a state this side
 * signed moves only the both-signed slot, and only forward (the latest slot
 * too when it is the latest state). A state not newer than the stored
 * both-signed one writes nothing.
 */
export function planSaveBothSigned (state: StoredState, latest: StoredState | undefined, both: StoredState | undefined): SlotWrite[] {
  const { channel, seqno, cumulative } = state
  if (latest == null || seqno > latest.seqno) throw new ChannelError('stale_state', `seqno ${seqno} on ${channel} was never signed here`)
  if (cumulative > latest.cumulative) throw new ChannelError('decreasing', `seqno ${seqno} on ${channel} pays more than the latest state`)
  if (both != null && seqno <= both.seqno) return []
  if (both != null && cumulative < both.cumulative) throw new ChannelError('decreasing', `seqno ${seqno} on ${channel} pays less than the stored both-signed state`)
  const writes: SlotWrite[] = []
  if (seqno === latest.seqno) writes.push({ slot: 'latest', state })
  writes.push({ slot: 'both', state })
  return writes
}

/** Refuses a state for a channel the store does not hold. */
export function unknownChannel (channel: string): ChannelError {
  return new ChannelError('unknown_channel', `no channel ${channel} in the store`)
}

/** Wraps a storage failure (SQLite's, IndexedDB's) as a ChannelStoreError naming the store and the failure's code. */
export function storeError (path: string, what: string, err: unknown): ChannelStoreError {
  if (err instanceof ChannelStoreError) return err
  const e = err as { code?: unknown, name?: unknown, message?: unknown }
  const code = typeof e.code === 'string' ? e.code : typeof e.name === 'string' && e.name !== 'Error' ? e.name : undefined
  const detail = code != null ? `${code}: ${String(e.message)}` : String(err)
  return new ChannelStoreError(path, `${what} (${detail})`, { cause: err })
}

const SIDES = new Set(['payer', 'payee'])
const STATUSES = new Set(['opening', 'open', 'closing', 'closed'])

/** Refuses a channel record a store cannot hold (SQLite's CHECK constraints say the same). */
export function checkRecord (path: string, record: ChannelRecord): void {
  const bad = (detail: string): never => { throw new ChannelStoreError(path, `cannot be written (channel ${record.address}: ${detail})`) }
  if (typeof record.address !== 'string' || record.address === '') bad('no address')
  if (!SIDES.has(record.side)) bad(`side ${String(record.side)} is neither payer nor payee`)
  if (!STATUSES.has(record.status)) bad(`status ${String(record.status)} is not one of ${[...STATUSES].join(', ')}`)
  if (typeof record.channelId !== 'bigint' || typeof record.deposited !== 'bigint') bad('channelId and deposited must be bigints')
  if (!(record.payerKey instanceof Uint8Array) || !(record.payeeKey instanceof Uint8Array)) bad('the keys must be bytes')
}

/** How a store keeps a state: amounts and seqno as decimal text (they exceed 2^53), signatures as bytes. */
export interface StateText {
  channel: string
  seqno: string
  cumulative: string
  payerSignature: Uint8Array
  payeeSignature: Uint8Array | null
  savedAtMs: number
}

/** A state as a store keeps it, back as a StoredState (the signatures copied). */
export function stateFromText (t: StateText): StoredState {
  const payeeSignature = t.payeeSignature == null ? null : new Uint8Array(t.payeeSignature)
  return { channel: t.channel, seqno: BigInt(t.seqno), cumulative: BigInt(t.cumulative), payerSignature: new Uint8Array(t.payerSignature), payeeSignature, savedAtMs: t.savedAtMs }
}

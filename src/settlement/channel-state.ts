/**
 * ChannelState {channel, seqno, cumulative}: what the payer signs and the
 * payee countersigns. The signed bytes are the hash of the cell the contract
 * itself checks (`stateToSign` in contracts/payment-channel.ts: a tag, the
 * network id, the channel's address and id), so a state that verifies here
 * verifies on chain, and a signature is good for one channel on one network.
 */
import { Address } from '@ton/core'
import { stateToSign } from '../../contracts/payment-channel.js'
import { ChannelError } from '../errors.js'
import { verifySignature } from './channel-key.js'
import type { ChannelKey } from './channel-key.js'
import type { ChannelRecord, StoredState } from './types.js'
import type { SignatureTag, SignedChannelState } from '../../contracts/payment-channel.js'

export interface ChannelState {
  /** the channel's address, raw form */
  channel: string
  seqno: bigint
  cumulative: bigint
}

/** The 32 bytes both parties sign for `tag` and this state of `record`'s channel. */
export function stateDigest (record: Pick<ChannelRecord, 'address' | 'networkId' | 'channelId'>, state: ChannelState, tag: SignatureTag = 'state'): Buffer {
  if (state.channel !== record.address) throw new ChannelError('wrong_channel', `a state of ${state.channel} is not one of ${record.address}`)
  return stateToSign(tag, { address: Address.parseRaw(record.address), networkId: record.networkId, channelId: record.channelId }, state).hash()
}

export function signState (key: ChannelKey, record: Pick<ChannelRecord, 'address' | 'networkId' | 'channelId'>, state: ChannelState, tag: SignatureTag = 'state'): Buffer {
  return Buffer.from(key.sign(stateDigest(record, state, tag)))
}

/** Throws ChannelError('bad_signature') unless `signature` is `side`'s over this state. */
export function checkStateSignature (record: ChannelRecord, state: ChannelState, side: 'payer' | 'payee', signature: Uint8Array, tag: SignatureTag = 'state'): void {
  const key = side === 'payer' ? record.payerKey : record.payeeKey
  if (!verifySignature(key, stateDigest(record, state, tag), signature)) {
    throw new ChannelError('bad_signature', `the ${side}'s signature over seqno ${state.seqno} (${state.cumulative} nanoTON) of ${record.address} does not verify`)
  }
}

/** A stored both-signed state, in the form the contract takes. */
export function toContractState (state: StoredState): SignedChannelState {
  if (state.payeeSignature == null) throw new ChannelError('malformed', `seqno ${state.seqno} of ${state.channel} is not countersigned by the payee`)
  return {
    seqno: state.seqno,
    cumulative: state.cumulative,
    payerSignature: Buffer.from(state.payerSignature),
    payeeSignature: Buffer.from(state.payeeSignature)
  }
}

/** Canonical raw form of a TON address string in any format; ChannelError('malformed') if it is none. */
export function rawAddress (address: string): string {
  try {
    return (Address.isRaw(address) ? Address.parseRaw(address) : Address.parse(address)).toRawString()
  } catch (err) {
    throw new ChannelError('malformed', `${JSON.stringify(address.slice(0, 80))} is not a TON address`, { cause: err })
  }
}

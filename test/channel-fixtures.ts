/** Both ends of one payment channel on their own stores, for unit tests of the settlement pieces. */
import { join } from 'node:path'
import { toNano } from '@ton/core'
import { ChannelKey } from '../src/settlement/channel-key.js'
import { PayeeChannel, PayerChannel } from '../src/settlement/channels.js'
import { openChannelStore } from '../src/settlement/store.js'
import type { ChannelRecord, ChannelStore } from '../src/settlement/types.js'

export const CHANNEL_ADDRESS = '0:' + 'ab'.repeat(32)

/** The record one side keeps of the test channel (1 TON deposited unless overridden). */
export function channelRecord (side: 'payer' | 'payee', payerKey: ChannelKey, payeeKey: ChannelKey, overrides: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    address: CHANNEL_ADDRESS, side, peerId: 'peer', networkId: -239, channelId: 7n, disputeWindowS: 3600,
    payerKey: payerKey.publicKey, payeeKey: payeeKey.publicKey,
    payer: '0:' + '11'.repeat(32), payee: '0:' + '22'.repeat(32),
    deposited: toNano('1'), status: 'open', createdAtMs: 1, updatedAtMs: 1,
    ...overrides
  }
}

export interface ChannelPair {
  payerKey: ChannelKey
  payeeKey: ChannelKey
  payerStore: ChannelStore
  payeeStore: ChannelStore
  payer: PayerChannel
  payee: PayeeChannel
}

/** Fresh keys, `payer.sqlite` and `payee.sqlite` in `dir` holding the channel, and both ends on them. */
export function openChannelPair (dir: string, overrides: Partial<ChannelRecord> = {}): ChannelPair {
  const payerKey = ChannelKey.generate()
  const payeeKey = ChannelKey.generate()
  const payerStore = openChannelStore(join(dir, 'payer.sqlite'))
  const payeeStore = openChannelStore(join(dir, 'payee.sqlite'))
  const payerRecord = channelRecord('payer', payerKey, payeeKey, overrides)
  const payeeRecord = channelRecord('payee', payerKey, payeeKey, overrides)
  payerStore.putChannel(payerRecord)
  payeeStore.putChannel(payeeRecord)
  return {
    payerKey,
    payeeKey,
    payerStore,
    payeeStore,
    payer: new PayerChannel(payerRecord, payerStore, payerKey),
    payee: new PayeeChannel(payeeRecord, payeeStore, payeeKey)
  }
}

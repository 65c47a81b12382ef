/** A chain that keeps channels in a map, for unit tests of the settlement pieces. */
import { PaymentChannel } from '../contracts/payment-channel.js'
import type { ChannelInfo, PaymentChannelConfig } from '../contracts/payment-channel.js'

/** A chain that keeps channels in a map: enough to drive the manager's decisions. */
export class FakeChain {
  readonly name = 'devnet' as const
  readonly networkId = 7
  readonly channels = new Map<string, ChannelInfo>()
  nowS = 1_000
  failOpen: 'no' | 'lost' | 'landed' = 'no'
  readonly calls: string[] = []

  channelAddress (config: PaymentChannelConfig): string {
    return PaymentChannel.createFromConfig(config).address.toRawString()
  }

  async openChannel (config: PaymentChannelConfig, amount: bigint): Promise<{ address: string }> {
    const address = this.channelAddress(config)
    this.calls.push(`open ${address}`)
    if (this.failOpen !== 'lost') this.channels.set(address, { ...config, status: 'open', deposited: amount, seqno: 0n, cumulative: 0n, closingSince: 0, balance: amount })
    if (this.failOpen !== 'no') throw new Error('timed out waiting for the channel')
    return { address }
  }

  async getChannel (address: string): Promise<ChannelInfo | null> { return this.channels.get(address) ?? null }
  async challenge (address: string): Promise<void> { this.calls.push(`challenge ${address}`) }
  async finishClose (address: string): Promise<void> { this.calls.push(`finish ${address}`) }
  async startClose (address: string): Promise<void> { this.calls.push(`start ${address}`) }
  async now (): Promise<number> { return this.nowS }
}

/**
 * The devnet as a chain: a ContractProvider over the in-process emulator
 * (an external message runs at once, with everything it causes), and the
 * ChainAdapter with the devnet-only faucet and clock.
 */
import { join } from 'node:path'
import { comment, external, openContract, toNano, TupleReader } from '@ton/core'
import { ChainError } from '../../errors.js'
import { parseAddress, WalletChainAdapter } from './adapter.js'
import { Devnet } from './devnet.js'
import { loadWalletKey, MNEMONIC_FILE } from './wallet.js'
import type { Address, Cell, Contract, ContractProvider, ContractState, OpenedContract, Sender, SenderArguments, StateInit, Transaction, TupleItem } from '@ton/core'
import type { KeyPair } from '@ton/crypto'
import type { ChainAccess, WaitOptions } from './adapter.js'

/** A ContractProvider over the devnet; an external message runs at once, with everything it causes. */
class DevnetProvider implements ContractProvider {
  constructor (private readonly devnet: Devnet, private readonly address: Address, private readonly init: StateInit | null) {}

  async getState (): Promise<ContractState> {
    const a = await this.devnet.account(this.address)
    return {
      balance: a.balance,
      extracurrency: null,
      last: a.lastLt === 0n ? null : { lt: a.lastLt, hash: a.lastHash },
      state: a.state === 'active'
        ? { type: 'active', code: a.code?.toBoc() ?? null, data: a.data?.toBoc() ?? null }
        : a.state === 'frozen' ? { type: 'frozen', stateHash: Buffer.alloc(32) } : { type: 'uninit' }
    }
  }

  async get (name: string | number, args: TupleItem[]): Promise<{ stack: TupleReader }> {
    const r = await this.devnet.runGetMethod(this.address, name, args)
    if (r.exitCode !== 0 && r.exitCode !== 1) throw new ChainError(`get method ${String(name)} on ${this.address.toRawString()} exited with code ${r.exitCode}`)
    return { stack: new TupleReader(r.stack) }
  }

  async external (body: Cell): Promise<void> {
    const deployed = (await this.devnet.account(this.address)).state === 'active'
    await this.devnet.sendExternal(external({ to: this.address, init: deployed ? null : this.init, body }))
  }

  async internal (via: Sender, args: { value: bigint | string, bounce?: boolean | null, sendMode?: SenderArguments['sendMode'], body?: Cell | string | null }): Promise<void> {
    const deployed = (await this.devnet.account(this.address)).state === 'active'
    await via.send({
      to: this.address,
      value: typeof args.value === 'string' ? toNano(args.value) : args.value,
      bounce: args.bounce ?? true,
      sendMode: args.sendMode,
      init: deployed ? null : this.init,
      body: typeof args.body === 'string' ? comment(args.body) : args.body ?? null
    })
  }

  open<T extends Contract>(contract: T): OpenedContract<T> {
    return openContract(contract, a => new DevnetProvider(this.devnet, a.address, a.init ?? null))
  }

  async getTransactions (address: Address, lt: bigint, hash: Buffer, limit?: number): Promise<Transaction[]> {
    return this.devnet.transactions(address, limit ?? 100, { fromLt: lt, fromHash: hash })
  }
}

/** ChainAccess over an in-process devnet. */
export function devnetAccess (devnet: Devnet): ChainAccess {
  return {
    provider: (address, init) => new DevnetProvider(devnet, address, init ?? null),
    transactions: async (address, limit) => devnet.transactions(address, limit),
    now: async () => devnet.now(),
    estimateExternalFee: async (address, body, init) => {
      const f = await devnet.emulateExternal(external({ to: address, init, body }))
      return f.inFwdFee + f.storageFee + f.gasFee + f.fwdFee
    }
  }
}

export interface DevnetAdapterOptions {
  /** an open devnet to share (several wallets in one process); closed by the caller */
  devnet?: Devnet
  /** the devnet's data dir when `devnet` is not given (opened, and closed with the adapter) */
  dataDir?: string
  /** the wallet's mnemonic, created when missing; default `<dataDir>/wallet.mnemonic` */
  mnemonicFile?: string
  wait?: Partial<WaitOptions>
}

/** The ChainAdapter on the in-process devnet, plus the devnet-only faucet and clock. */
export class DevnetAdapter extends WalletChainAdapter {
  readonly devnet: Devnet
  private readonly ownsDevnet: boolean

  private constructor (devnet: Devnet, owns: boolean, keys: KeyPair, wait: WaitOptions) {
    super('devnet', devnetAccess(devnet), keys, wait)
    this.devnet = devnet
    this.ownsDevnet = owns
  }

  static async open (opts: DevnetAdapterOptions): Promise<DevnetAdapter> {
    const dir = opts.devnet?.dir ?? opts.dataDir
    if (dir == null) throw new ChainError('DevnetAdapter.open needs a devnet or a dataDir')
    const keys = await loadWalletKey(opts.mnemonicFile ?? join(dir, MNEMONIC_FILE), { create: true })
    const devnet = opts.devnet ?? await Devnet.open(dir)
    return new DevnetAdapter(devnet, opts.devnet == null, keys, { timeoutMs: 10_000, pollIntervalMs: 10, ...opts.wait })
  }

  /** Faucet: sends `amount` nanoTON to `address` (this wallet: `adapter.address`). */
  async fund (address: string, amount: bigint): Promise<void> {
    await this.devnet.fund(parseAddress(address), amount)
  }

  /** Moves chain time forward; returns the new chain time. */
  async advanceTime (seconds: number): Promise<number> {
    return await this.devnet.advanceTime(seconds)
  }

  override async close (): Promise<void> {
    await super.close()
    if (this.ownsDevnet) await this.devnet.close()
  }
}

/**
 * The in-process devnet: an @ton/sandbox Blockchain (the real TVM and
 * transaction emulator) persisted in the data dir, with a faucet and a clock
 * tests can move forward.
 *
 * - Persistence: `<dir>/devnet-chain.json` holds the sandbox snapshot
 *   (snapshotToSerializable, without the sandbox's own transaction list), the
 *   clock offset and the last DEVNET_TX_LOG transactions of every account.
 *   It is rewritten atomically (temp file, fsync, rename, fsync of the dir)
 *   after every change, before the change is reported.
 * - One process at a time: `<dir>/devnet-chain.lock` holds the owner's pid
 *   (a stale lock, of a process that is gone, is taken over). Several
 *   processes share one devnet through `cocoon chain` (devnet-server.ts).
 * - Chain time: set to the wall clock right after create, moved to
 *   wall clock + offset before every operation, never backwards (an account
 *   refuses a transaction older than its last). `advanceTime(s)` adds to the
 *   offset: time travel for dispute windows.
 * - Faucet: `fund(address, amount)` from a sandbox treasury, bounce off, so
 *   an undeployed wallet keeps the money.
 */
import { mkdir, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { Blockchain, GetMethodError, snapshotFromSerializable, snapshotToSerializable } from '@ton/sandbox'
import { Cell, loadMessage, loadTransaction, toNano } from '@ton/core'
import { ChainError } from '../../errors.js'
import { describeError } from './adapter.js'
import { DEVNET_FILE_VERSION, acquireLock, readDevnetFile, writeAtomically } from './devnet-file.js'
import type { DevnetFile } from './devnet-file.js'
import type { Address, Message, Transaction, TupleItem } from '@ton/core'
import type { SendMessageResult, TreasuryContract, SandboxContract } from '@ton/sandbox'

export const DEVNET_CHAIN_FILE = 'devnet-chain.json'
export const DEVNET_LOCK_FILE = 'devnet-chain.lock'
/** Transactions kept per account (newest first). */
export const DEVNET_TX_LOG = 200
/** Most one faucet call hands out. */
export const DEVNET_FAUCET_MAX = toNano('1000000')

const FAUCET_SEED = 'cocoon-devnet-faucet'
/** Fees of a wallet's transaction, as toncenter's estimateFee reports them. */
export interface ExternalFees {
  inFwdFee: bigint
  storageFee: bigint
  gasFee: bigint
  fwdFee: bigint
}

export interface AccountSnapshot {
  balance: bigint
  state: 'active' | 'uninit' | 'frozen'
  code: Cell | null
  data: Cell | null
  lastLt: bigint
  lastHash: Buffer
}

export interface GetMethodOutcome {
  exitCode: number
  gasUsed: bigint
  stack: TupleItem[]
}

/** A sandbox chain persisted in a data dir (see the file comment). */
export class Devnet {
  readonly dir: string
  readonly path: string
  private readonly chain: Blockchain
  private readonly clock: () => number
  private readonly txs: Map<string, string[]>
  private readonly parsed = new Map<string, Transaction>()
  private offsetS: number
  private seqnoValue: number
  private faucet: SandboxContract<TreasuryContract> | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private closed = false

  private constructor (dir: string, chain: Blockchain, file: DevnetFile | null, clock: () => number) {
    this.dir = dir
    this.path = join(dir, DEVNET_CHAIN_FILE)
    this.chain = chain
    this.clock = clock
    this.offsetS = file?.offsetS ?? 0
    this.seqnoValue = file?.seqno ?? 0
    this.txs = new Map(Object.entries(file?.txs ?? {}))
  }

  /**
   * Opens the devnet kept in `dir`, creating it when there is none.
   * `clock` (ms since the epoch) is for tests; it defaults to Date.now.
   */
  static async open (dir: string, opts: { clock?: () => number } = {}): Promise<Devnet> {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    await acquireLock(join(dir, DEVNET_LOCK_FILE))
    try {
      const clock = opts.clock ?? Date.now
      const path = join(dir, DEVNET_CHAIN_FILE)
      const file = await readDevnetFile(path)
      const chain = await Blockchain.create()
      // right after create, before anything runs: the wall clock
      chain.now = Math.floor(clock() / 1000)
      if (file != null) await chain.loadFrom(snapshotFromSerializable(file.chain))
      const devnet = new Devnet(dir, chain, file, clock)
      devnet.syncClock()
      devnet.faucet = await chain.treasury(FAUCET_SEED)
      devnet.dropSandboxLog()
      if (file == null) await devnet.persist()
      return devnet
    } catch (err) {
      await unlink(join(dir, DEVNET_LOCK_FILE)).catch(() => {})
      if (err instanceof ChainError) throw err
      throw new ChainError(`devnet ${dir}: cannot open (${describeError(err)})`, { cause: err })
    }
  }

  /** Chain time, unix seconds (moves to the wall clock plus the offset, never back). */
  now (): number {
    this.syncClock()
    return this.chain.now ?? Math.floor(this.clock() / 1000)
  }

  /** Counts applied sends. */
  get seqno (): number {
    return this.seqnoValue
  }

  /** Moves chain time forward by `seconds` (devnet only); returns the new chain time. */
  async advanceTime (seconds: number): Promise<number> {
    if (!Number.isSafeInteger(seconds) || seconds < 0) throw new ChainError(`advanceTime: seconds must be a whole number >= 0, got ${seconds}`)
    return await this.exclusive(async () => {
      this.offsetS += seconds
      this.syncClock()
      await this.persist()
      return this.chain.now ?? 0
    })
  }

  /** Sends `amount` nanoTON from the faucet to `address` (bounce off: an undeployed wallet keeps it). */
  async fund (address: Address, amount: bigint): Promise<void> {
    if (amount <= 0n || amount > DEVNET_FAUCET_MAX) throw new ChainError(`fund: amount must be within 1..${DEVNET_FAUCET_MAX} nanoTON, got ${amount}`)
    await this.exclusive(async () => {
      const faucet = this.faucet
      if (faucet == null) throw new ChainError('fund: the devnet has no faucet')
      this.syncClock()
      const account = await this.chain.getContract(faucet.address)
      if (account.balance < amount + toNano('10')) account.balance = DEVNET_FAUCET_MAX * 10n + amount
      const result = await faucet.send({ to: address, value: amount, bounce: false })
      await this.applied(result)
    })
  }

  /**
   * Applies an external-in message (a BOC of a Message, as sendBoc takes it)
   * and everything it causes; returns the message's hash. Throws ChainError
   * when the destination does not accept it (bad signature, seqno, expired).
   */
  async sendExternal (message: Cell | Message): Promise<Buffer> {
    const msg = message instanceof Cell ? parseMessage(message) : message
    if (msg.info.type !== 'external-in') throw new ChainError('sendBoc: only external-in messages can be sent')
    const cell = message instanceof Cell ? message : null
    const dest = msg.info.dest
    return await this.exclusive(async () => {
      this.syncClock()
      let result: SendMessageResult
      try {
        result = await this.chain.sendMessage(msg)
      } catch (err) {
        this.dropSandboxLog()
        throw new ChainError(`the external message to ${dest.toString()} was not accepted: ${describeError(err)}`, { cause: err })
      }
      await this.applied(result)
      return cell?.hash() ?? result.transactions[0]?.inMessage?.body.hash() ?? Buffer.alloc(32)
    })
  }

  /** Runs an external message on a copy of the chain and reports the destination's fees; nothing is kept. */
  async emulateExternal (message: Cell | Message): Promise<ExternalFees> {
    const msg = message instanceof Cell ? parseMessage(message) : message
    if (msg.info.type !== 'external-in') throw new ChainError('estimateFee: only external-in messages can be estimated')
    const dest = msg.info.dest
    return await this.exclusive(async () => {
      this.syncClock()
      const snapshot = this.chain.snapshot()
      try {
        const result = await this.chain.sendMessage(msg)
        const tx = result.transactions.find(t => t.inMessage?.info.type === 'external-in')
        if (tx == null) throw new ChainError('estimateFee: the message ran no transaction')
        return transactionFees(tx)
      } catch (err) {
        if (err instanceof ChainError) throw err
        throw new ChainError(`estimateFee: the message to ${dest.toString()} would not be accepted: ${describeError(err)}`, { cause: err })
      } finally {
        await this.chain.loadFrom(snapshot)
        this.dropSandboxLog()
      }
    })
  }

  async account (address: Address): Promise<AccountSnapshot> {
    return await this.exclusive(async () => {
      const c = await this.chain.getContract(address)
      const s = c.accountState
      return {
        balance: c.balance,
        state: s == null ? 'uninit' : s.type,
        code: s?.type === 'active' ? s.state.code ?? null : null,
        data: s?.type === 'active' ? s.state.data ?? null : null,
        lastLt: c.lastTransactionLt,
        lastHash: bigintTo32(c.lastTransactionHash)
      }
    })
  }

  /** Runs a getter; a getter that throws reports its exit code, an account with no code -13 (as toncenter). */
  async runGetMethod (address: Address, method: string | number, stack: TupleItem[] = []): Promise<GetMethodOutcome> {
    return await this.exclusive(async () => {
      this.syncClock()
      const c = await this.chain.getContract(address)
      if (c.accountState?.type !== 'active') return { exitCode: -13, gasUsed: 0n, stack: [] }
      try {
        const r = await this.chain.runGetMethod(address, method, stack)
        return { exitCode: r.exitCode, gasUsed: r.gasUsed, stack: r.stack }
      } catch (err) {
        if (err instanceof GetMethodError) return { exitCode: err.exitCode, gasUsed: err.gasUsed, stack: [] }
        throw err
      }
    })
  }

  /**
   * The account's transactions, newest first: from the one at `fromLt`
   * (inclusive; with `fromHash` it must match) down, `limit` at most, none
   * at or below `toLt`.
   */
  transactions (address: Address, limit: number, opts: { fromLt?: bigint, fromHash?: Buffer, toLt?: bigint } = {}): Transaction[] {
    const bocs = this.txs.get(address.toRawString()) ?? []
    const out: Transaction[] = []
    let started = opts.fromLt == null
    for (const boc of bocs) {
      if (out.length >= limit) break
      const tx = this.parse(boc)
      if (!started) {
        if (tx.lt > opts.fromLt!) continue
        if (tx.lt < opts.fromLt!) break
        if (opts.fromHash != null && !tx.hash().equals(opts.fromHash)) break
        started = true
      }
      if (opts.toLt != null && tx.lt <= opts.toLt) break
      out.push(tx)
    }
    return out
  }

  /** The faucet's address (a sandbox treasury). */
  get faucetAddress (): Address | undefined {
    return this.faucet?.address
  }

  async close (): Promise<void> {
    if (this.closed) return
    await this.exclusive(async () => {
      this.closed = true
      await this.persist()
    })
    await unlink(join(this.dir, DEVNET_LOCK_FILE)).catch(() => {})
  }

  private parse (boc: string): Transaction {
    let tx = this.parsed.get(boc)
    if (tx == null) {
      tx = loadTransaction(Cell.fromBase64(boc).beginParse())
      this.parsed.set(boc, tx)
    }
    return tx
  }

  /** Records a send's transactions in the per-account log and persists the chain. */
  private async applied (result: SendMessageResult): Promise<void> {
    for (const tx of result.transactions) {
      const dest = tx.inMessage?.info.dest
      if (dest == null || typeof (dest as Address).toRawString !== 'function') continue
      const key = (dest as Address).toRawString()
      const boc = tx.raw.toBoc().toString('base64')
      const list = this.txs.get(key) ?? []
      list.unshift(boc)
      for (const dropped of list.splice(DEVNET_TX_LOG)) this.parsed.delete(dropped)
      this.txs.set(key, list)
    }
    this.seqnoValue++
    this.dropSandboxLog()
    await this.persist()
  }

  /** The sandbox keeps every transaction (with logs) forever; we keep our own bounded log instead. */
  private dropSandboxLog (): void {
    const log = (this.chain as unknown as { transactions?: unknown[] }).transactions
    if (Array.isArray(log)) log.length = 0
  }

  private syncClock (): void {
    const target = Math.floor(this.clock() / 1000) + this.offsetS
    if (this.chain.now == null || target > this.chain.now) this.chain.now = target
  }

  private async persist (): Promise<void> {
    const snapshot = { ...this.chain.snapshot(), transactions: [] }
    const file: DevnetFile = {
      version: DEVNET_FILE_VERSION,
      offsetS: this.offsetS,
      seqno: this.seqnoValue,
      chain: snapshotToSerializable(snapshot),
      txs: Object.fromEntries(this.txs)
    }
    await writeAtomically(this.path, JSON.stringify(file))
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      if (this.closed) throw new ChainError(`devnet ${this.dir} is closed`)
      return await fn()
    })
    this.queue = run.catch(() => {})
    return await run
  }
}

function parseMessage (cell: Cell): Message {
  try {
    return loadMessage(cell.beginParse())
  } catch (err) {
    throw new ChainError(`not a message BOC: ${describeError(err)}`, { cause: err })
  }
}

function transactionFees (tx: Transaction): ExternalFees {
  const d = tx.description
  let storageFee = 0n
  let gasFee = 0n
  let fwdFee = 0n
  let actionFees = 0n
  if (d.type === 'generic') {
    storageFee = d.storagePhase?.storageFeesCollected ?? 0n
    if (d.computePhase.type === 'vm') gasFee = d.computePhase.gasFees
    fwdFee = d.actionPhase?.totalFwdFees ?? 0n
    actionFees = d.actionPhase?.totalActionFees ?? 0n
  }
  const inFwdFee = tx.totalFees.coins - storageFee - gasFee - actionFees
  return { inFwdFee: inFwdFee > 0n ? inFwdFee : 0n, storageFee, gasFee, fwdFee }
}

function bigintTo32 (n: bigint): Buffer {
  return Buffer.from(n.toString(16).padStart(64, '0'), 'hex')
}

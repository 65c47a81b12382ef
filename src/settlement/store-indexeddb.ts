/**
 * The channel store for browsers: the same two slots per channel and the
 * same rules as the SQLite store (`store-rules.ts`), kept in IndexedDB.
 *
 * IndexedDB commits asynchronously, while the ChannelStore calls are
 * synchronous (nothing may run between checking a state and storing it). So
 * the store holds every channel and state in memory, loaded when it opens;
 * a write changes memory at once and joins the next commit: one readwrite
 * transaction with `durability: 'strict'` carrying every write made since
 * the last (a group commit). `flush()` resolves once the commit holding
 * every earlier write completed, and callers send or acknowledge a state
 * only after that. A failed commit fails the store: every later call throws
 * ChannelStoreError, and a reopen reads what was durably committed.
 *
 * One store per database at a time: it holds a Web Lock named after the
 * database for as long as it is open, so a second tab fails to open it with
 * a clear error instead of the two drifting apart.
 */
import { ChannelStoreError } from '../errors.js'
import { checkBothSignedShape, checkRecord, checkShape, planSave, planSaveBothSigned, stateFromText, storeError, unknownChannel } from './store-rules.js'
import type { Slot, SlotWrite, StateText } from './store-rules.js'
import type { ChannelLifecycle, ChannelRecord, ChannelSide, ChannelStore, StoredState } from './types.js'

/** The IndexedDB schema version; a database from a newer build is refused. */
export const INDEXEDDB_SCHEMA_VERSION = 1
export const DEFAULT_INDEXEDDB_NAME = 'cocoon-channels'

const CHANNELS = 'channels'
const STATES = 'states'

export interface IndexedDbStoreOptions {
  /** The IndexedDB to use (default: the page's `indexedDB`). */
  indexedDB?: IDBFactory
  /** The lock manager that keeps one store per database (default: `navigator.locks`; null: no lock). */
  locks?: LockManager | null
}

interface ChannelEntry extends Omit<ChannelRecord, 'channelId' | 'deposited'> {
  channelId: string
  deposited: string
}

interface StateEntry extends StateText {
  slot: Slot
}

interface Slots {
  latest?: StoredState
  both?: StoredState
}

/** A flush waiting for the commit that holds write number `upTo`. */
interface Waiter {
  upTo: number
  resolve: () => void
  reject: (err: Error) => void
}

export class IndexedDbChannelStore implements ChannelStore {
  readonly path: string
  private readonly db: IDBDatabase
  private readonly channels = new Map<string, ChannelRecord>()
  private readonly states = new Map<string, Slots>()
  /** Writes not yet handed to a transaction, by key (a later write of the same key replaces an earlier one). */
  private pending = new Map<string, { store: string, value: ChannelEntry | StateEntry }>()
  private written = 0
  private committed = 0
  private committing = false
  private waiters: Waiter[] = []
  private failure: ChannelStoreError | undefined
  private closed = false
  private readonly releaseLock: () => void

  private constructor (path: string, db: IDBDatabase, releaseLock: () => void) {
    this.path = path
    this.db = db
    this.releaseLock = releaseLock
  }

  /** Opens (creating when missing) the store in the IndexedDB database `name` and loads it. */
  static async open (name = DEFAULT_INDEXEDDB_NAME, options: IndexedDbStoreOptions = {}): Promise<IndexedDbChannelStore> {
    const path = `indexeddb:${name}`
    const factory = options.indexedDB ?? globalThis.indexedDB
    if (factory == null) throw new ChannelStoreError(path, 'cannot be opened: this platform has no IndexedDB')
    const locks = options.locks === undefined ? globalThis.navigator?.locks : options.locks
    const release = locks == null ? () => {} : await holdLock(locks, `cocoon-channel-store:${name}`)
    if (release == null) throw new ChannelStoreError(path, 'is open in another tab or window; close it there first')
    try {
      const db = await openDatabase(factory, name, path)
      const store = new IndexedDbChannelStore(path, db, release)
      await store.load().catch((err: unknown) => { db.close(); throw storeError(path, 'cannot be read', err) })
      db.onversionchange = () => { store.fail(new ChannelStoreError(path, 'was upgraded or deleted by another page')) }
      return store
    } catch (err) {
      release()
      throw storeError(path, 'cannot be opened', err)
    }
  }

  putChannel (record: ChannelRecord): void {
    this.usable()
    checkRecord(this.path, record)
    const copy = { ...record, payerKey: new Uint8Array(record.payerKey), payeeKey: new Uint8Array(record.payeeKey) }
    this.channels.set(record.address, copy)
    this.enqueue(`c:${record.address}`, CHANNELS, toChannelEntry(copy))
  }

  getChannel (address: string): ChannelRecord | undefined {
    this.usable()
    const record = this.channels.get(address)
    return record == null ? undefined : { ...record, payerKey: new Uint8Array(record.payerKey), payeeKey: new Uint8Array(record.payeeKey) }
  }

  listChannels (filter: { side?: ChannelSide, peerId?: string, status?: ChannelLifecycle } = {}): ChannelRecord[] {
    this.usable()
    return [...this.channels.values()]
      .filter(c => (filter.side == null || c.side === filter.side) && (filter.peerId == null || c.peerId === filter.peerId) &&
        (filter.status == null || c.status === filter.status))
      .sort((a, b) => a.createdAtMs - b.createdAtMs || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
      .map(c => ({ ...c, payerKey: new Uint8Array(c.payerKey), payeeKey: new Uint8Array(c.payeeKey) }))
  }

  saveState (state: StoredState): void {
    this.usable()
    checkShape(state)
    if (!this.channels.has(state.channel)) throw unknownChannel(state.channel)
    this.apply(planSave(copyState(state), this.states.get(state.channel)?.latest))
  }

  saveBothSigned (state: StoredState): void {
    this.usable()
    checkBothSignedShape(state)
    if (!this.channels.has(state.channel)) throw unknownChannel(state.channel)
    const slots = this.states.get(state.channel)
    this.apply(planSaveBothSigned(copyState(state), slots?.latest, slots?.both))
  }

  latestState (channel: string): StoredState | undefined {
    this.usable()
    const s = this.states.get(channel)?.latest
    return s == null ? undefined : copyState(s)
  }

  latestBothSigned (channel: string): StoredState | undefined {
    this.usable()
    const s = this.states.get(channel)?.both
    return s == null ? undefined : copyState(s)
  }

  async flush (): Promise<void> {
    if (this.failure != null) throw this.failure
    if (this.committed >= this.written) return
    await new Promise<void>((resolve, reject) => { this.waiters.push({ upTo: this.written, resolve, reject }) })
  }

  /** Closes the store; writes already made are still committed first (await flush() to know they were). */
  close (): void {
    if (this.closed) return
    this.closed = true
    if (!this.committing) this.finishClose()
  }

  private apply (writes: SlotWrite[]): void {
    if (writes.length === 0) return
    const slots = this.states.get(writes[0].state.channel) ?? {}
    for (const w of writes) {
      slots[w.slot] = w.state
      this.enqueue(`s:${w.state.channel}|${w.slot}`, STATES, toStateEntry(w.slot, w.state))
    }
    this.states.set(writes[0].state.channel, slots)
  }

  private enqueue (key: string, store: string, value: ChannelEntry | StateEntry): void {
    this.pending.delete(key)
    this.pending.set(key, { store, value })
    this.written++
    // writes made in the same task share one commit
    if (!this.committing) {
      this.committing = true
      queueMicrotask(() => { void this.commitLoop() })
    }
  }

  private async commitLoop (): Promise<void> {
    while (this.pending.size > 0 && this.failure == null) {
      const batch = [...this.pending.values()]
      const upTo = this.written
      this.pending = new Map()
      try {
        await commit(this.db, batch)
      } catch (err) {
        this.fail(storeError(this.path, 'cannot be written', err))
        break
      }
      this.committed = upTo
      const done = this.waiters.filter(w => w.upTo <= upTo)
      this.waiters = this.waiters.filter(w => w.upTo > upTo)
      for (const w of done) w.resolve()
    }
    this.committing = false
    if (this.closed) this.finishClose()
  }

  private fail (err: ChannelStoreError): void {
    if (this.failure != null) return
    this.failure = err
    for (const w of this.waiters) w.reject(err)
    this.waiters = []
    this.pending.clear()
  }

  private finishClose (): void {
    this.db.close()
    this.releaseLock()
    this.fail(new ChannelStoreError(this.path, 'is closed'))
  }

  private usable (): void {
    if (this.failure != null) throw this.failure
    if (this.closed) throw new ChannelStoreError(this.path, 'is closed')
  }

  private async load (): Promise<void> {
    const tx = this.db.transaction([CHANNELS, STATES], 'readonly')
    const [channels, states] = await Promise.all([
      request<ChannelEntry[]>(tx.objectStore(CHANNELS).getAll()),
      request<StateEntry[]>(tx.objectStore(STATES).getAll())
    ])
    for (const c of channels) this.channels.set(c.address, fromChannelEntry(c))
    for (const s of states) {
      const slots = this.states.get(s.channel) ?? {}
      slots[s.slot] = fromStateEntry(s)
      this.states.set(s.channel, slots)
    }
  }
}

/** Holds the named Web Lock until the returned function is called; null when another holder has it. */
async function holdLock (locks: LockManager, name: string): Promise<(() => void) | null> {
  return await new Promise((resolve, reject) => {
    locks.request(name, { ifAvailable: true }, async (lock) => {
      if (lock == null) {
        resolve(null)
        return
      }
      await new Promise<void>(release => { resolve(release) })
    }).catch(reject)
  })
}

async function openDatabase (factory: IDBFactory, name: string, path: string): Promise<IDBDatabase> {
  const req = factory.open(name, INDEXEDDB_SCHEMA_VERSION)
  req.onupgradeneeded = () => {
    const db = req.result
    if (!db.objectStoreNames.contains(CHANNELS)) db.createObjectStore(CHANNELS, { keyPath: 'address' })
    if (!db.objectStoreNames.contains(STATES)) db.createObjectStore(STATES, { keyPath: ['channel', 'slot'] })
  }
  try {
    return await request(req)
  } catch (err) {
    if ((err as { name?: unknown }).name === 'VersionError') {
      throw new ChannelStoreError(path, `was written by a newer build (schema version above ${INDEXEDDB_SCHEMA_VERSION}); use a newer cocoon`, { cause: err })
    }
    throw err
  }
}

/** Writes a batch in one transaction that resolves only once the browser reports it durably committed. */
async function commit (db: IDBDatabase, batch: Array<{ store: string, value: ChannelEntry | StateEntry }>): Promise<void> {
  const tx = db.transaction([CHANNELS, STATES], 'readwrite', { durability: 'strict' })
  const done = new Promise<void>((resolve, reject) => {
    tx.oncomplete = () => { resolve() }
    tx.onerror = () => { reject(tx.error ?? new Error('transaction failed')) }
    tx.onabort = () => { reject(tx.error ?? new Error('transaction aborted')) }
  })
  for (const { store, value } of batch) tx.objectStore(store).put(value)
  await done
}

async function request<T> (req: IDBRequest<T>): Promise<T> {
  return await new Promise((resolve, reject) => {
    req.onsuccess = () => { resolve(req.result) }
    req.onerror = () => { reject(req.error ?? new Error('request failed')) }
  })
}

function copyState (s: StoredState): StoredState {
  return { ...s, payerSignature: new Uint8Array(s.payerSignature), payeeSignature: s.payeeSignature == null ? null : new Uint8Array(s.payeeSignature) }
}

function toChannelEntry (r: ChannelRecord): ChannelEntry {
  return { ...r, channelId: r.channelId.toString(), deposited: r.deposited.toString() }
}

function fromChannelEntry (e: ChannelEntry): ChannelRecord {
  return { ...e, channelId: BigInt(e.channelId), deposited: BigInt(e.deposited), payerKey: new Uint8Array(e.payerKey), payeeKey: new Uint8Array(e.payeeKey) }
}

function toStateEntry (slot: Slot, s: StoredState): StateEntry {
  return { ...s, slot, seqno: s.seqno.toString(), cumulative: s.cumulative.toString() }
}

function fromStateEntry (e: StateEntry): StoredState {
  return stateFromText(e)
}

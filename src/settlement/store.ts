/**
 * The durable channel store: one SQLite file in the data dir, WAL journal
 * with synchronous = FULL. By default every write is one transaction that is
 * fsynced before the call returns; with group commit (what nodes use) the
 * states of one turn of the event loop share a transaction, and `flush()`
 * resolves once it is fsynced. Either way `kill -9` or a power cut loses
 * nothing a caller acted on, since callers act only after `flush()`. Calls
 * are synchronous on purpose: nothing can run between checking a state
 * against the stored one and storing it.
 *
 * Per channel it keeps two states, not a history: the latest (highest seqno,
 * perhaps signed by the payer only) and the latest both-signed one, which is
 * all a close or a challenge can use. Amounts and seqnos are decimal TEXT,
 * since they exceed 2^53. Every SQLite failure (disk full, corrupt file,
 * locked) becomes a ChannelStoreError naming the file; refusals of a state
 * are ChannelErrors. Either way the transaction is rolled back.
 */
import { chmodSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync } from 'node:fs'
import { dirname } from 'node:path'
import Database from 'better-sqlite3'
import { ChannelError, ChannelStoreError } from '../errors.js'
import { checkBothSignedShape, checkShape, planSave, planSaveBothSigned, stateFromText, storeError, unknownChannel } from './store-rules.js'
import type { Slot } from './store-rules.js'
import type { ChannelLifecycle, ChannelRecord, ChannelSide, ChannelStore, StoredState } from './types.js'

/** Bumped on every incompatible change to the schema; a file from a newer build is refused. */
export const CHANNEL_STORE_SCHEMA_VERSION = 1

const SCHEMA = `
CREATE TABLE channels (
  address TEXT PRIMARY KEY,
  side TEXT NOT NULL CHECK (side IN ('payer', 'payee')),
  peer_id TEXT NOT NULL,
  network_id INTEGER NOT NULL,
  channel_id TEXT NOT NULL,
  dispute_window_s INTEGER NOT NULL,
  payer_key BLOB NOT NULL,
  payee_key BLOB NOT NULL,
  payer TEXT NOT NULL,
  payee TEXT NOT NULL,
  deposited TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('opening', 'open', 'closing', 'closed')),
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX channels_by_peer ON channels (peer_id);
-- slot 'latest' or 'both': the latest state and the latest both-signed state
CREATE TABLE states (
  channel TEXT NOT NULL REFERENCES channels (address),
  slot TEXT NOT NULL CHECK (slot IN ('latest', 'both')),
  seqno TEXT NOT NULL,
  cumulative TEXT NOT NULL,
  payer_signature BLOB NOT NULL,
  payee_signature BLOB,
  saved_at_ms INTEGER NOT NULL,
  PRIMARY KEY (channel, slot)
) STRICT;
`

interface ChannelRow {
  address: string
  side: ChannelSide
  peer_id: string
  network_id: number
  channel_id: string
  dispute_window_s: number
  payer_key: Buffer
  payee_key: Buffer
  payer: string
  payee: string
  deposited: string
  status: ChannelLifecycle
  created_at_ms: number
  updated_at_ms: number
}

interface StateRow {
  channel: string
  seqno: string
  cumulative: string
  payer_signature: Buffer
  payee_signature: Buffer | null
  saved_at_ms: number
}

export interface ChannelStoreOptions {
  /** How long a write waits for another process's lock before failing (default 2000 ms). */
  busyTimeoutMs?: number
  /**
   * Group commit: states saved in one turn of the event loop share one
   * transaction and one fsync, committed on the next turn; `flush()`
   * resolves once it is. Channel records still commit before `putChannel`
   * returns. Off by default: every caller that acts on a state must await
   * `flush()` first.
   */
  groupCommit?: boolean
}

export class SqliteChannelStore implements ChannelStore {
  readonly path: string
  private readonly db: Database.Database
  private readonly stmt: {
    putChannel: Database.Statement
    getChannel: Database.Statement<[string], ChannelRow>
    listChannels: Database.Statement<[{ side: string | null, peerId: string | null, status: string | null }], ChannelRow>
    getState: Database.Statement<[string, Slot], StateRow>
    putState: Database.Statement
  }

  private readonly save: (state: StoredState) => void
  private readonly saveBoth: (state: StoredState) => void
  private readonly groupCommit: boolean
  /** The open group transaction's waiters; undefined while none is open. */
  private batch: Array<{ resolve: () => void, reject: (err: Error) => void }> | undefined
  private failure: ChannelStoreError | undefined

  constructor (path: string, options: ChannelStoreOptions = {}) {
    this.path = path
    this.groupCommit = options.groupCommit === true
    this.db = this.guard('cannot be opened', () => openDatabase(path, options.busyTimeoutMs ?? 2000))
    try {
      this.stmt = {
        putChannel: this.db.prepare(`INSERT INTO channels VALUES (@address, @side, @peerId, @networkId, @channelId,
            @disputeWindowS, @payerKey, @payeeKey, @payer, @payee, @deposited, @status, @createdAtMs, @updatedAtMs)
          ON CONFLICT (address) DO UPDATE SET side = excluded.side, peer_id = excluded.peer_id,
            network_id = excluded.network_id, channel_id = excluded.channel_id, dispute_window_s = excluded.dispute_window_s,
            payer_key = excluded.payer_key, payee_key = excluded.payee_key, payer = excluded.payer, payee = excluded.payee,
            deposited = excluded.deposited, status = excluded.status, created_at_ms = excluded.created_at_ms,
            updated_at_ms = excluded.updated_at_ms`),
        getChannel: this.db.prepare('SELECT * FROM channels WHERE address = ?'),
        listChannels: this.db.prepare(`SELECT * FROM channels
          WHERE (@side IS NULL OR side = @side) AND (@peerId IS NULL OR peer_id = @peerId) AND (@status IS NULL OR status = @status)
          ORDER BY created_at_ms, address`),
        getState: this.db.prepare('SELECT * FROM states WHERE channel = ? AND slot = ?'),
        putState: this.db.prepare(`INSERT OR REPLACE INTO states VALUES
          (@channel, @slot, @seqno, @cumulative, @payerSignature, @payeeSignature, @savedAtMs)`)
      }
    } catch (err) {
      this.db.close()
      throw storeError(path, 'cannot be prepared', err)
    }
    // IMMEDIATE takes the write lock before the read, so another process cannot slip a state in between
    this.save = this.db.transaction((state: StoredState) => { this.saveLocked(state) }).immediate
    this.saveBoth = this.db.transaction((state: StoredState) => { this.saveBothLocked(state) }).immediate
  }

  putChannel (record: ChannelRecord): void {
    this.usable()
    this.guard('cannot be written', () => {
      this.stmt.putChannel.run({
        ...record,
        channelId: record.channelId.toString(),
        deposited: record.deposited.toString(),
        payerKey: Buffer.from(record.payerKey),
        payeeKey: Buffer.from(record.payeeKey)
      })
    })
    // a record is durable when this returns, with whatever states its transaction carried
    this.commit()
  }

  getChannel (address: string): ChannelRecord | undefined {
    const row = this.guard('cannot be read', () => this.stmt.getChannel.get(address))
    return row == null ? undefined : toRecord(row)
  }

  listChannels (filter: { side?: ChannelSide, peerId?: string, status?: ChannelLifecycle } = {}): ChannelRecord[] {
    const rows = this.guard('cannot be read', () => this.stmt.listChannels.all({
      side: filter.side ?? null, peerId: filter.peerId ?? null, status: filter.status ?? null
    }))
    return rows.map(toRecord)
  }

  saveState (state: StoredState): void {
    this.usable()
    checkShape(state)
    this.guard('cannot be written', () => { this.begin(); this.save(state) })
  }

  saveBothSigned (state: StoredState): void {
    this.usable()
    checkBothSignedShape(state)
    this.guard('cannot be written', () => { this.begin(); this.saveBoth(state) })
  }

  latestState (channel: string): StoredState | undefined {
    return this.readState(channel, 'latest')
  }

  latestBothSigned (channel: string): StoredState | undefined {
    return this.readState(channel, 'both')
  }

  /** Without group commit every write is durable when it returns: nothing is ever waiting. */
  async flush (): Promise<void> {
    if (this.failure != null) throw this.failure
    if (this.batch == null) return
    await new Promise<void>((resolve, reject) => { this.batch?.push({ resolve, reject }) })
  }

  close (): void {
    this.commit()
    if (this.db.open) this.guard('cannot be closed', () => this.db.close())
  }

  /** With group commit: opens the shared transaction (IMMEDIATE: the write lock first) and schedules its commit. */
  private begin (): void {
    if (!this.groupCommit || this.batch != null) return
    this.db.exec('BEGIN IMMEDIATE')
    this.batch = []
    setImmediate(() => { this.commit() })
  }

  /** Commits the open group transaction (one fsync) and answers its flushes; a failure fails the store. */
  private commit (): void {
    const waiters = this.batch
    if (waiters == null) return
    this.batch = undefined
    try {
      this.db.exec('COMMIT')
    } catch (err) {
      try { this.db.exec('ROLLBACK') } catch {}
      this.failure = storeError(this.path, 'cannot commit', err)
      for (const w of waiters) w.reject(this.failure)
      return
    }
    for (const w of waiters) w.resolve()
  }

  private usable (): void {
    if (this.failure != null) throw this.failure
  }

  /** Runs inside the write transaction; a throw rolls it back. */
  private saveBothLocked (state: StoredState): void {
    if (this.stmt.getChannel.get(state.channel) == null) throw unknownChannel(state.channel)
    const writes = planSaveBothSigned(state, this.readState(state.channel, 'latest'), this.readState(state.channel, 'both'))
    for (const w of writes) this.writeState(w.slot, w.state)
  }

  /** Runs inside the write transaction; a throw rolls it back. */
  private saveLocked (state: StoredState): void {
    if (this.stmt.getChannel.get(state.channel) == null) throw unknownChannel(state.channel)
    for (const w of planSave(state, this.readState(state.channel, 'latest'))) this.writeState(w.slot, w.state)
  }

  private writeState (slot: Slot, state: StoredState): void {
    this.stmt.putState.run({
      channel: state.channel,
      slot,
      seqno: state.seqno.toString(),
      cumulative: state.cumulative.toString(),
      payerSignature: Buffer.from(state.payerSignature),
      payeeSignature: state.payeeSignature == null ? null : Buffer.from(state.payeeSignature),
      savedAtMs: state.savedAtMs
    })
  }

  private readState (channel: string, slot: Slot): StoredState | undefined {
    const row = this.guard('cannot be read', () => this.stmt.getState.get(channel, slot))
    return row == null ? undefined : toState(row)
  }

  /** Runs `fn`, turning anything but a ChannelError into a ChannelStoreError. */
  private guard<T>(what: string, fn: () => T): T {
    try {
      return fn()
    } catch (err) {
      if (err instanceof ChannelError || err instanceof ChannelStoreError) throw err
      throw storeError(this.path, what, err)
    }
  }
}

/** Opens (creating when missing) the store at `path`, a file in the node's data dir. */
export function openChannelStore (path: string, options?: ChannelStoreOptions): SqliteChannelStore {
  return new SqliteChannelStore(path, options)
}

function openDatabase (path: string, busyTimeoutMs: number): Database.Database {
  const dir = dirname(path)
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  if (!existsSync(path)) {
    // created here with mode 0600 (SQLite gives its -wal and -shm files the same) and the
    // directory synced, so the file itself survives a power cut, not only what is written to it
    closeSync(openSync(path, 'a', 0o600))
    const fd = openSync(dir, 'r')
    try { fsyncSync(fd) } finally { closeSync(fd) }
  }
  // an older file may have been left readable by others: what peers signed is nobody else's business
  chmodSync(path, 0o600)
  const db = new Database(path, { timeout: busyTimeoutMs })
  try {
    // the first read of the header: a file that is not SQLite fails here (SQLITE_NOTADB)
    db.pragma('journal_mode = WAL')
    db.pragma('synchronous = FULL')
    db.pragma('foreign_keys = ON')
    db.transaction(() => {
      const version = db.pragma('user_version', { simple: true }) as number
      if (version > CHANNEL_STORE_SCHEMA_VERSION) {
        throw new ChannelStoreError(path, `has schema version ${version}, newer than the ${CHANNEL_STORE_SCHEMA_VERSION} this build knows; run a newer cocoon or restore a backup`)
      }
      if (version === CHANNEL_STORE_SCHEMA_VERSION) return
      const tables = db.prepare("SELECT count(*) FROM sqlite_schema WHERE type = 'table'").pluck().get() as number
      if (tables > 0) throw new ChannelStoreError(path, 'is an SQLite database but not a channel store; move it away')
      db.exec(SCHEMA)
      db.pragma(`user_version = ${CHANNEL_STORE_SCHEMA_VERSION}`)
    }).immediate()
    return db
  } catch (err) {
    db.close()
    throw err
  }
}

function toRecord (row: ChannelRow): ChannelRecord {
  return {
    address: row.address,
    side: row.side,
    peerId: row.peer_id,
    networkId: row.network_id,
    channelId: BigInt(row.channel_id),
    disputeWindowS: row.dispute_window_s,
    payerKey: new Uint8Array(row.payer_key),
    payeeKey: new Uint8Array(row.payee_key),
    payer: row.payer,
    payee: row.payee,
    deposited: BigInt(row.deposited),
    status: row.status,
    createdAtMs: row.created_at_ms,
    updatedAtMs: row.updated_at_ms
  }
}

function toState (row: StateRow): StoredState {
  return stateFromText({ ...row, payerSignature: row.payer_signature, payeeSignature: row.payee_signature, savedAtMs: row.saved_at_ms })
}

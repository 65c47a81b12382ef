import { randomBytes } from 'node:crypto'
import { statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { IDBFactory } from 'fake-indexeddb'
import Database from 'better-sqlite3'
import { ChannelError, ChannelStoreError } from '../../src/errors.js'
import { CHANNEL_STORE_SCHEMA_VERSION, openChannelStore } from '../../src/settlement/store.js'
import { IndexedDbChannelStore } from '../../src/settlement/store-indexeddb.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { SqliteChannelStore } from '../../src/settlement/store.js'
import type { ChannelRecord, ChannelStore, StoredState } from '../../src/settlement/types.js'

const ADDRESS = `0:${'ab'.repeat(32)}`
const OTHER = `0:${'cd'.repeat(32)}`
const BIG = 2n ** 64n + 12345n

function record (address = ADDRESS, changes: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    address,
    side: 'payer',
    peerId: '12D3KooWPeerA',
    networkId: -239,
    channelId: 2n ** 63n + 7n,
    disputeWindowS: 3600,
    payerKey: randomBytes(32),
    payeeKey: new Uint8Array(randomBytes(32)),
    payer: `0:${'11'.repeat(32)}`,
    payee: `0:${'22'.repeat(32)}`,
    deposited: 10n ** 30n + 1n,
    status: 'open',
    createdAtMs: 1_750_000_000_000,
    updatedAtMs: 1_750_000_000_001,
    ...changes
  }
}

function state (seqno: bigint, cumulative: bigint, bothSigned = false, channel = ADDRESS): StoredState {
  return {
    channel,
    seqno,
    cumulative,
    payerSignature: signature(1, seqno),
    payeeSignature: bothSigned ? signature(2, seqno) : null,
    savedAtMs: 1_750_000_000_100 + Number(seqno % 1000n)
  }
}

/** A deterministic 64-byte stand-in for a signature: the store does not verify them. */
function signature (who: number, seqno: bigint): Uint8Array {
  const sig = new Uint8Array(64).fill(who)
  new DataView(sig.buffer).setBigUint64(56, BigInt.asUintN(64, seqno))
  return sig
}

/** The ChannelError `fn` throws; fails the test when it throws nothing or something else. */
function channelErrorOf (fn: () => unknown): ChannelError {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(ChannelError)
    return err as ChannelError
  }
  expect.fail('expected a ChannelError')
}

function storeErrorOf (fn: () => unknown): ChannelStoreError {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(ChannelStoreError)
    return err as ChannelStoreError
  }
  expect.fail('expected a ChannelStoreError')
}

/** What every ChannelStore must do, whatever keeps it: run against SQLite and against IndexedDB. */
function storeContract (kind: StoreKind): void {
  describe(`channel store contract: ${kind.name}`, () => {
    let store: ChannelStore

    beforeEach(async () => {
      store = await kind.open()
    })

    afterEach(async () => {
      store.close()
      await kind.cleanup()
    })

    it('round-trips channel records, bigints beyond 2^53 and keys included', () => {
      const rec = record()
      store.putChannel(rec)
      expect(store.getChannel(ADDRESS)).to.deep.equal({ ...rec, payerKey: new Uint8Array(rec.payerKey) })
      expect(store.getChannel(OTHER)).to.equal(undefined)

      const updated = { ...rec, deposited: BIG, status: 'closing' as const, updatedAtMs: rec.updatedAtMs + 5 }
      store.putChannel(updated)
      expect(store.getChannel(ADDRESS)).to.deep.equal({ ...updated, payerKey: new Uint8Array(rec.payerKey) })
      expect(store.listChannels()).to.have.length(1)
    })

    it('round-trips states exactly, with and without the payee signature', () => {
      store.putChannel(record())
      expect(store.latestState(ADDRESS)).to.equal(undefined)
      expect(store.latestBothSigned(ADDRESS)).to.equal(undefined)

      const first = state(2n ** 60n, BIG)
      store.saveState(first)
      expect(store.latestState(ADDRESS)).to.deep.equal(first)
      expect(store.latestBothSigned(ADDRESS)).to.equal(undefined)

      const second = state(2n ** 60n + 1n, BIG + 1n, true)
      store.saveState(second)
      expect(store.latestState(ADDRESS)).to.deep.equal(second)
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(second)
    })

    it('keeps the latest both-signed state while newer ones are signed by the payer only', () => {
      store.putChannel(record())
      store.saveState(state(1n, 100n, true))
      store.saveState(state(2n, 200n))
      store.saveState(state(3n, 300n))
      expect(store.latestState(ADDRESS)?.seqno).to.equal(3n)
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(1n, 100n, true))

      // the payee countersigns the latest: it becomes both
      store.saveState(state(3n, 300n, true))
      expect(store.latestState(ADDRESS)).to.deep.equal(state(3n, 300n, true))
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(3n, 300n, true))
    })

    it('moves only the both-signed slot forward for a countersignature of an older state', () => {
      store.putChannel(record())
      store.saveState(state(1n, 100n, true))
      store.saveState(state(2n, 200n))
      store.saveState(state(3n, 300n))
      store.saveBothSigned(state(2n, 200n, true))
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(2n, 200n, true))
      expect(store.latestState(ADDRESS)).to.deep.equal(state(3n, 300n))
      // older than the both-signed one: left alone
      store.saveBothSigned(state(1n, 100n, true))
      expect(store.latestBothSigned(ADDRESS)?.seqno).to.equal(2n)
      expect(channelErrorOf(() => { store.saveBothSigned(state(4n, 400n, true)) }).reason, 'never signed').to.equal('stale_state')
      expect(channelErrorOf(() => { store.saveBothSigned(state(3n, 900n, true)) }).reason, 'more than the latest').to.equal('decreasing')
      expect(channelErrorOf(() => { store.saveBothSigned(state(3n, 300n)) }).reason, 'no payee signature').to.equal('malformed')
      // the latest itself: both slots
      store.saveBothSigned(state(3n, 300n, true))
      expect(store.latestState(ADDRESS)).to.deep.equal(state(3n, 300n, true))
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(3n, 300n, true))
    })

    it('accepts the same state again without losing the payee signature', () => {
      store.putChannel(record())
      store.saveState(state(1n, 100n))
      store.saveState(state(1n, 100n))
      store.saveState(state(1n, 100n, true))
      store.saveState(state(1n, 100n, true))
      store.saveState(state(1n, 100n))
      expect(store.latestState(ADDRESS)).to.deep.equal(state(1n, 100n, true))
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(1n, 100n, true))
    })

    it('refuses every bad state and leaves the stored ones untouched', () => {
      store.putChannel(record())
      store.saveState(state(5n, 500n, true))
      store.saveState(state(6n, 600n))
      store.saveState(state(6n, 600n, true))
      const stored = state(6n, 600n, true)
      const refusals: Array<[string, StoredState, string]> = [
        ['a lower seqno', state(4n, 700n, true), 'stale_state'],
        ['the same seqno with another amount', state(6n, 601n, true), 'stale_state'],
        ['the same state with another payer signature', { ...stored, payerSignature: new Uint8Array(64).fill(7) }, 'stale_state'],
        ['the same state with another payee signature', { ...stored, payeeSignature: new Uint8Array(64).fill(9) }, 'stale_state'],
        ['a lower amount', state(7n, 599n, true), 'decreasing'],
        ['an unknown channel', state(7n, 700n, false, OTHER), 'unknown_channel'],
        ['a short payer signature', { ...state(7n, 700n), payerSignature: new Uint8Array(63) }, 'malformed'],
        ['a long payee signature', { ...state(7n, 700n, true), payeeSignature: new Uint8Array(65) }, 'malformed'],
        ['a negative seqno', state(-1n, 700n), 'malformed'],
        ['a negative amount', state(7n, -700n), 'malformed']
      ]
      for (const [what, bad, reason] of refusals) {
        expect(channelErrorOf(() => { store.saveState(bad) }).reason, what).to.equal(reason)
        expect(store.latestState(ADDRESS), what).to.deep.equal(stored)
        expect(store.latestBothSigned(ADDRESS), what).to.deep.equal(stored)
      }
      expect(store.latestState(OTHER)).to.equal(undefined)
    })

    it('gives the same data after a close and a reopen', async () => {
      const a = record()
      const b = record(OTHER, { side: 'payee', channelId: 1n })
      store.putChannel(a)
      store.putChannel(b)
      store.saveState(state(10n, BIG, true))
      store.saveState(state(11n, BIG + 1n))
      store.saveState(state(1n, 1n, false, OTHER))
      store.close()
      store.close()

      store = await kind.reopen()
      expect(store.getChannel(ADDRESS)).to.deep.equal({ ...a, payerKey: new Uint8Array(a.payerKey) })
      expect(store.getChannel(OTHER)).to.deep.equal({ ...b, payerKey: new Uint8Array(b.payerKey) })
      expect(store.latestState(ADDRESS)).to.deep.equal(state(11n, BIG + 1n))
      expect(store.latestBothSigned(ADDRESS)).to.deep.equal(state(10n, BIG, true))
      expect(store.latestState(OTHER)).to.deep.equal(state(1n, 1n, false, OTHER))
      // the checks still hold against what was reopened
      expect(channelErrorOf(() => { store.saveState(state(11n, BIG)) }).reason).to.equal('stale_state')
    })

    it('filters channels by side, peer and status', () => {
      store.putChannel(record(`0:${'01'.repeat(32)}`, { side: 'payer', peerId: 'p1', status: 'open', createdAtMs: 1 }))
      store.putChannel(record(`0:${'02'.repeat(32)}`, { side: 'payee', peerId: 'p1', status: 'open', createdAtMs: 2 }))
      store.putChannel(record(`0:${'03'.repeat(32)}`, { side: 'payee', peerId: 'p2', status: 'closed', createdAtMs: 3 }))
      const addresses = (filter?: Parameters<ChannelStore['listChannels']>[0]): string[] =>
        store.listChannels(filter).map(r => r.address.slice(2, 4))
      expect(addresses()).to.deep.equal(['01', '02', '03'])
      expect(addresses({})).to.deep.equal(['01', '02', '03'])
      expect(addresses({ side: 'payee' })).to.deep.equal(['02', '03'])
      expect(addresses({ peerId: 'p1' })).to.deep.equal(['01', '02'])
      expect(addresses({ status: 'closed' })).to.deep.equal(['03'])
      expect(addresses({ side: 'payee', peerId: 'p1', status: 'open' })).to.deep.equal(['02'])
      expect(addresses({ side: 'payer', status: 'closed' })).to.deep.equal([])
    })
  })
}

interface StoreKind {
  name: string
  /** A fresh, empty store. */
  open(): Promise<ChannelStore>
  /** The same store opened again (after the test closed it). */
  reopen(): Promise<ChannelStore>
  cleanup(): Promise<void>
}

const sqliteKind: StoreKind = (() => {
  let path = ''
  return {
    name: 'SQLite',
    async open () {
      path = join(await tempDir(), 'channels.sqlite')
      return openChannelStore(path)
    },
    async reopen () { return openChannelStore(path) },
    async cleanup () { await cleanupTempDirs() }
  }
})()

const indexedDbKind: StoreKind = (() => {
  let factory = new IDBFactory()
  return {
    name: 'IndexedDB',
    async open () {
      factory = new IDBFactory()
      return await IndexedDbChannelStore.open('channels', { indexedDB: factory, locks: null })
    },
    async reopen () { return await IndexedDbChannelStore.open('channels', { indexedDB: factory, locks: null }) },
    async cleanup () {}
  }
})()

const sqliteGroupKind: StoreKind = (() => {
  let path = ''
  return {
    name: 'SQLite with group commit',
    async open () {
      path = join(await tempDir(), 'channels.sqlite')
      return openChannelStore(path, { groupCommit: true })
    },
    async reopen () { return openChannelStore(path, { groupCommit: true }) },
    async cleanup () { await cleanupTempDirs() }
  }
})()

storeContract(sqliteKind)
storeContract(sqliteGroupKind)
storeContract(indexedDbKind)

describe('SQLite channel store with group commit', () => {
  afterEach(cleanupTempDirs)

  it('commits the states of one turn together: another connection sees them once flush resolved, not before', async () => {
    const path = join(await tempDir(), 'channels.sqlite')
    const store = openChannelStore(path, { groupCommit: true })
    store.putChannel(record())
    const other = new Database(path, { readonly: true })
    const committed = (): string | undefined => (other.prepare("SELECT seqno FROM states WHERE channel = ? AND slot = 'latest'").get(ADDRESS) as { seqno: string } | undefined)?.seqno
    try {
      for (let i = 1n; i <= 100n; i++) store.saveState(state(i, i * 10n))
      expect(store.latestState(ADDRESS)?.seqno, 'this store reads its own writes at once').to.equal(100n)
      expect(committed(), 'not committed yet').to.equal(undefined)
      await store.flush()
      expect(committed(), 'one commit for the hundred').to.equal('100')
      // a refused state rolls back alone; the batch goes on
      store.saveState(state(101n, 1_010n))
      expect(channelErrorOf(() => { store.saveState(state(50n, 1n)) }).reason).to.equal('stale_state')
      await store.flush()
      expect(committed()).to.equal('101')
      // a channel record is durable when putChannel returns, with the states before it
      store.saveState(state(102n, 1_020n))
      store.putChannel(record(OTHER))
      expect(committed(), 'committed with the record').to.equal('102')
      store.saveState(state(103n, 1_030n))
      store.close()
      expect(committed(), 'close commits what is open').to.equal('103')
    } finally {
      other.close()
    }
  })
})

describe('SQLite channel store', () => {
  let dir: string
  let path: string
  let store: SqliteChannelStore

  beforeEach(async () => {
    dir = await tempDir()
    path = join(dir, 'data', 'channels.sqlite')
    store = openChannelStore(path)
  })

  afterEach(async () => {
    store.close()
    await cleanupTempDirs()
  })

  it('creates the file and its directory, readable by the owner only', () => {
    expect(store.path).to.equal(path)
    expect(statSync(path).mode & 0o777).to.equal(0o600)
    store.putChannel(record())
    expect(statSync(`${path}-wal`).mode & 0o777).to.equal(0o600)
  })

  it('refuses a file written by a newer schema version, saying so', () => {
    store.close()
    const db = new Database(path)
    db.pragma(`user_version = ${CHANNEL_STORE_SCHEMA_VERSION + 1}`)
    db.close()
    const err = storeErrorOf(() => openChannelStore(path))
    expect(err.path).to.equal(path)
    expect(err.message).to.contain(`schema version ${CHANNEL_STORE_SCHEMA_VERSION + 1}`).and.contain('newer')
    store = openChannelStore(join(dir, 'fresh.sqlite'))
  })

  it('refuses a garbage file and an SQLite file that is not a store', () => {
    store.close()
    const garbage = join(dir, 'garbage.sqlite')
    writeFileSync(garbage, randomBytes(8192))
    const err = storeErrorOf(() => openChannelStore(garbage))
    expect(err.path).to.equal(garbage)
    expect(err.message).to.contain('SQLITE_NOTADB')
    expect(err.cause).to.be.instanceOf(Error)

    const foreign = join(dir, 'foreign.sqlite')
    const db = new Database(foreign)
    db.exec('CREATE TABLE t (x)')
    db.close()
    expect(storeErrorOf(() => openChannelStore(foreign)).message).to.contain('not a channel store')
    store = openChannelStore(path)
  })

  it('turns SQLite failures into ChannelStoreError', () => {
    store.putChannel(record())
    store.close()
    const err = storeErrorOf(() => { store.saveState(state(1n, 1n)) })
    expect(err.path).to.equal(path)
    storeErrorOf(() => store.getChannel(ADDRESS))
    storeErrorOf(() => { store.putChannel(record(OTHER, { status: 'bogus' as never })) })
    store = openChannelStore(path)
    storeErrorOf(() => { store.putChannel(record(OTHER, { status: 'bogus' as never })) })
    expect(store.getChannel(OTHER)).to.equal(undefined)
  })

  it('fails a write with ChannelStoreError while another connection holds the write lock, and writes nothing', () => {
    store.putChannel(record())
    store.saveState(state(1n, 100n))
    store.close()
    store = openChannelStore(path, { busyTimeoutMs: 50 })
    const other = new Database(path)
    try {
      other.exec('BEGIN IMMEDIATE')
      const err = storeErrorOf(() => { store.saveState(state(2n, 200n)) })
      expect(err.message).to.contain('SQLITE_BUSY')
      other.exec('ROLLBACK')
    } finally {
      other.close()
    }
    expect(store.latestState(ADDRESS)).to.deep.equal(state(1n, 100n))
    store.saveState(state(2n, 200n))
    expect(store.latestState(ADDRESS)?.seqno).to.equal(2n)
  })
})

/**
 * The IndexedDB channel store's own behaviour (its shared rules are in
 * channel-store.test.ts): writes commit in groups, flush resolves only once
 * they are committed, a failed commit fails the store, and it refuses a
 * database from a newer build. Runs on fake-indexeddb (an in-memory
 * IndexedDB); test/integration/browser-store.test.ts runs it in Chromium.
 */
import { expect } from 'chai'
import { IDBFactory, forceCloseDatabase } from 'fake-indexeddb'
import { ChannelStoreError } from '../../src/errors.js'
import { INDEXEDDB_SCHEMA_VERSION, IndexedDbChannelStore } from '../../src/settlement/store-indexeddb.js'
import type { ChannelRecord, StoredState } from '../../src/settlement/types.js'

const ADDRESS = `0:${'ab'.repeat(32)}`

function record (changes: Partial<ChannelRecord> = {}): ChannelRecord {
  return {
    address: ADDRESS, side: 'payer', peerId: '12D3KooWPeerA', networkId: -239, channelId: 7n, disputeWindowS: 3600,
    payerKey: new Uint8Array(32).fill(1), payeeKey: new Uint8Array(32).fill(2),
    payer: `0:${'11'.repeat(32)}`, payee: `0:${'22'.repeat(32)}`, deposited: 10n ** 12n, status: 'open',
    createdAtMs: 1, updatedAtMs: 1, ...changes
  }
}

function state (seqno: bigint, cumulative: bigint): StoredState {
  return { channel: ADDRESS, seqno, cumulative, payerSignature: new Uint8Array(64).fill(Number(seqno % 250n) + 1), payeeSignature: null, savedAtMs: 1 }
}

/** The latest state's seqno as another connection reads it from the database: what is durably there. */
async function committedSeqno (factory: IDBFactory, name: string): Promise<bigint | undefined> {
  const db = await new Promise<IDBDatabase>((resolve, reject) => {
    const req = factory.open(name)
    req.onsuccess = () => { resolve(req.result) }
    req.onerror = () => { reject(req.error) }
  })
  try {
    const row = await new Promise<{ seqno: string } | undefined>((resolve, reject) => {
      const req = db.transaction('states', 'readonly').objectStore('states').get([ADDRESS, 'latest'])
      req.onsuccess = () => { resolve(req.result as { seqno: string } | undefined) }
      req.onerror = () => { reject(req.error) }
    })
    return row == null ? undefined : BigInt(row.seqno)
  } finally {
    db.close()
  }
}

async function storeErrorOf (p: Promise<unknown>): Promise<ChannelStoreError> {
  try {
    await p
  } catch (err) {
    expect(err).to.be.instanceOf(ChannelStoreError)
    return err as ChannelStoreError
  }
  expect.fail('expected a ChannelStoreError')
}

describe('IndexedDB channel store', () => {
  let factory: IDBFactory
  const open = async (name = 'channels'): Promise<IndexedDbChannelStore> => await IndexedDbChannelStore.open(name, { indexedDB: factory, locks: null })

  beforeEach(() => {
    factory = new IDBFactory()
  })

  it('commits a burst of writes in one transaction, and they are in the database once flush resolves', async () => {
    const store = await open()
    store.putChannel(record())
    await store.flush()
    let transactions = 0
    const db = (store as unknown as { db: IDBDatabase }).db
    const original = db.transaction.bind(db)
    db.transaction = ((...args: Parameters<IDBDatabase['transaction']>) => {
      if (args[1] === 'readwrite') transactions++
      return original(...args)
    }) as IDBDatabase['transaction']
    for (let i = 1n; i <= 200n; i++) store.saveState(state(i, i * 10n))
    // visible to this store's reads at once
    expect(store.latestState(ADDRESS)?.seqno).to.equal(200n)
    await store.flush()
    expect(await committedSeqno(factory, 'channels')).to.equal(200n)
    expect(transactions, '200 writes in one task: one transaction').to.equal(1)
    await store.flush()
    store.close()
  })

  it('keeps writes made while a commit runs for the next one, and flush waits for that one too', async () => {
    const store = await open()
    store.putChannel(record())
    store.saveState(state(1n, 10n))
    const first = store.flush()
    await Promise.resolve()
    store.saveState(state(2n, 20n))
    const second = store.flush()
    await first
    await second
    expect(await committedSeqno(factory, 'channels')).to.equal(2n)
    store.close()
  })

  it('fails every call once a commit failed, and a reopen reads what was committed', async () => {
    const store = await open()
    store.putChannel(record())
    store.saveState(state(1n, 10n))
    await store.flush()
    store.saveState(state(2n, 20n))
    // the browser closes the connection under the store (storage cleared, disk error)
    // fake-indexeddb types its argument as its own class
    forceCloseDatabase((store as unknown as { db: never }).db)
    const err = await storeErrorOf(store.flush())
    expect(err.path).to.equal('indexeddb:channels')
    expect(err.message).to.contain('cannot be written')
    expect(() => store.latestState(ADDRESS)).to.throw(ChannelStoreError)
    expect(() => { store.saveState(state(3n, 30n)) }).to.throw(ChannelStoreError)
    await storeErrorOf(store.flush())
    const again = await open()
    expect(again.latestState(ADDRESS)?.seqno, 'the acknowledged state survives, the unacknowledged one is gone').to.equal(1n)
    again.close()
  })

  it('commits what was written before close, and refuses calls after it', async () => {
    const store = await open()
    store.putChannel(record())
    store.saveState(state(5n, 50n))
    store.close()
    expect(() => store.getChannel(ADDRESS)).to.throw(ChannelStoreError, 'is closed')
    const again = await open()
    expect(again.latestState(ADDRESS)?.seqno).to.equal(5n)
    again.close()
  })

  it('refuses a database written by a newer build, and a record it cannot hold', async () => {
    await new Promise<void>((resolve, reject) => {
      const req = factory.open('newer', INDEXEDDB_SCHEMA_VERSION + 1)
      req.onsuccess = () => { req.result.close(); resolve() }
      req.onerror = () => { reject(req.error) }
    })
    const err = await storeErrorOf(open('newer'))
    expect(err.message).to.contain('newer build')
    const store = await open()
    expect(() => { store.putChannel(record({ status: 'bogus' as never })) }).to.throw(ChannelStoreError, 'status bogus')
    expect(store.getChannel(ADDRESS)).to.equal(undefined)
    store.close()
  })

  it('says so when the platform has no IndexedDB', async () => {
    const err = await storeErrorOf(IndexedDbChannelStore.open('x', { indexedDB: undefined, locks: null }))
    expect(err.message).to.contain('no IndexedDB')
  })
})

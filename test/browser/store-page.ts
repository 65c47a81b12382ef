/**
 * The page side of test/integration/browser-store.test.ts, bundled for
 * Chromium with esbuild: the IndexedDB channel store driven from a real
 * page. Every state the page reports through `window.acked` was flushed
 * first, exactly as a payer flushes before it sends a state.
 */
import { ChannelStoreError } from '../../src/errors.js'
import { IndexedDbChannelStore } from '../../src/settlement/store-indexeddb.js'
import type { ChannelRecord } from '../../src/settlement/types.js'

const NAME = 'cocoon-test-channels'
const ADDRESS = `0:${'ab'.repeat(32)}`

function record (): ChannelRecord {
  return {
    address: ADDRESS, side: 'payer', peerId: '12D3KooWProxy', networkId: -239, channelId: 2n ** 63n + 1n, disputeWindowS: 3600,
    payerKey: new Uint8Array(32).fill(1), payeeKey: new Uint8Array(32).fill(2),
    payer: `0:${'11'.repeat(32)}`, payee: `0:${'22'.repeat(32)}`, deposited: 10n ** 30n, status: 'open',
    createdAtMs: Date.now(), updatedAtMs: Date.now()
  }
}

let store: IndexedDbChannelStore | undefined

const api = {
  /** Opens the store; 'opened', or the ChannelStoreError's message. */
  async open (): Promise<string> {
    try {
      store = await IndexedDbChannelStore.open(NAME)
      return 'opened'
    } catch (err) {
      return err instanceof ChannelStoreError ? `ChannelStoreError: ${err.message}` : `other: ${String(err)}`
    }
  },

  close (): void {
    store?.close()
    store = undefined
  },

  /** Signs-and-stores states without end, acknowledging each one (through `window.acked`) once flushed. */
  async writeForever (): Promise<void> {
    const s = store as IndexedDbChannelStore
    if (s.getChannel(ADDRESS) == null) s.putChannel(record())
    let seqno = s.latestState(ADDRESS)?.seqno ?? 0n
    const acked = (globalThis as unknown as { acked: (seqno: string) => Promise<void> }).acked
    for (;;) {
      seqno++
      s.saveState({ channel: ADDRESS, seqno, cumulative: seqno * 1000n, payerSignature: new Uint8Array(64).fill(Number(seqno % 255n)), payeeSignature: null, savedAtMs: Date.now() })
      await s.flush()
      void acked(seqno.toString())
    }
  },

  /** The latest stored state: seqno and amount as decimal strings. */
  latest (): { seqno: string, cumulative: string } | null {
    const l = (store as IndexedDbChannelStore).latestState(ADDRESS)
    return l == null ? null : { seqno: l.seqno.toString(), cumulative: l.cumulative.toString() }
  }
}

export type StorePageApi = typeof api
;(globalThis as unknown as { storeTest: StorePageApi }).storeTest = api

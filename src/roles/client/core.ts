/**
 * The browser-safe client core: what a client needs to find proxies, check
 * the workers' attestation, seal a job to a worker's key, run it through the
 * outbound hop and pay as it streams. It imports nothing from `node:*`,
 * native modules or the filesystem; where Node has faster primitives
 * (OpenSSL for sealing and channel signatures) the core takes the portable
 * `@noble/*` ones by default and Node entry points swap them in
 * (`roles/node-crypto.ts`). Channel states persist through the
 * `ChannelStore` interface: SQLite on Node (`settlement/store.ts`), IndexedDB
 * in browsers (`IndexedDbChannelStore`, exported here).
 *
 * `npm test` bundles this module for browsers (scripts/check-browser.mjs)
 * and fails on any Node builtin.
 */
export { JobClient } from './job-client.js'
export type { JobClientInit, JobClientStatus } from './job-client.js'
export { ProxyPool } from './proxy-pool.js'
export { OutboundHop } from '../../jobs/outbound.js'
export { JobLifecycle } from '../../jobs/lifecycle.js'
export type { HopPayer } from '../../jobs/payments.js'
export { randomRequestId, sealRequest } from '../../tee/seal.js'
export { EvidenceVerifier } from '../../tee/attestor.js'
export { ChannelKey, verifySignature } from '../../settlement/channel-key.js'
export { PayerChannel } from '../../settlement/channels.js'
export { JobPayer } from '../../settlement/job-payments.js'
export { IndexedDbChannelStore } from '../../settlement/store-indexeddb.js'
export type { ChannelStore } from '../../settlement/types.js'

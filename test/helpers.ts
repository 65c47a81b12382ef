import '../src/polyfills.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { defaults, merge, validate } from '../src/config/load.js'
import { AttestationError } from '../src/errors.js'
import { waitFor } from '../src/ops/wait-for.js'
import { noise } from '@libp2p/noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import type { NodeConfig } from '../src/config/schema.js'
import type { PeerRecord } from '../src/p2p/peer-directory.js'
import type { RunningNode } from '../src/roles/runtime.js'
import type { Logger } from '@libp2p/interface'
import type { Libp2pOptions } from 'libp2p'
import type { RoleName } from '../src/config/role-names.js'

/** A fresh temporary directory; `cleanup()` removes every one made. */
const made: string[] = []
export async function tempDir (prefix = 'cocoon-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}
export async function cleanupTempDirs (): Promise<void> {
  await Promise.all(made.splice(0).map(async d => rm(d, { recursive: true, force: true })))
}

/** A validated loopback config for an in-process test node. */
export function testConfig (role: RoleName, dataDir: string, bootstrap: string[] = [], overrides: Record<string, unknown> = {}): NodeConfig {
  return validate(merge(merge(defaults('local', role, {}), {
    role,
    network: 'local',
    dataDir,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    announce: [],
    bootstrap,
    useDefaultBootstrap: false,
    logLevel: 'silent',
    admin: { enabled: false, host: '127.0.0.1', port: 0 },
    dht: { addressFilter: 'all' },
    maxConnections: 300,
    // fast and deterministic; tests of the llama backend ask for it
    worker: { backend: 'synthetic' },
    client: { api: { port: 0 } }
  }), overrides))
}

export { waitFor }

/**
 * Publishes one presence heartbeat from `sender` and records, for each
 * receiver, how many ms after the publish it was accepted there. Receivers
 * that did not get it within `timeoutMs` are counted as missing.
 */
export async function heartbeatArrivals (sender: RunningNode, receivers: RunningNode[], timeoutMs: number): Promise<{ arrivalsMs: number[], missing: number }> {
  const id = sender.peerId.toString()
  const before = new Map(receivers.map(n => [n, n.directory.lastSeq(id)]))
  const arrived = new Map<RunningNode, number>()
  const started = performance.now()
  const offs = receivers.map(n => {
    const listener = (evt: CustomEvent<PeerRecord>): void => {
      if (evt.detail.peerId === id && evt.detail.seq > (before.get(n) ?? 0n) && !arrived.has(n)) arrived.set(n, performance.now() - started)
    }
    n.directory.addEventListener('peer:updated', listener)
    return () => { n.directory.removeEventListener('peer:updated', listener) }
  })
  try {
    await sender.presence.announce()
    await waitFor(() => arrived.size === receivers.length, timeoutMs, 'the heartbeat at every receiver').catch(() => {})
  } finally {
    offs.forEach(off => { off() })
  }
  return { arrivalsMs: [...arrived.values()], missing: receivers.length - arrived.size }
}

/** Transport, encryption and muxer of a plain libp2p node on loopback (baselines, emulated public peers). */
export function plainLoopbackNode (): Pick<Libp2pOptions, 'addresses' | 'transports' | 'connectionEncrypters' | 'streamMuxers' | 'connectionManager'> {
  return {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] }
  }
}

/** The reason of the AttestationError `promise` rejects with; fails the test if it resolves or throws something else. */
export async function reasonOf (promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err, 'expected an AttestationError').to.be.instanceOf(AttestationError)
  return (err as AttestationError).reason
}

/** The same for a function that throws synchronously. */
export function reasonOfSync (fn: () => unknown): string {
  try {
    fn()
  } catch (err) {
    expect(err).to.be.instanceOf(AttestationError)
    return (err as AttestationError).reason
  }
  expect.fail('expected an AttestationError')
}

/** A logger that drops everything, for pieces under test that take one. */
export const noLog: Logger = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false, newScope: () => noLog }) as unknown as Logger

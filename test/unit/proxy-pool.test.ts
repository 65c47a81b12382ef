import { expect } from 'chai'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PeerDirectory, Role } from '../../src/p2p/peer-directory.js'
import { InferenceError } from '../../src/inference/types.js'
import { ProxyPool } from '../../src/roles/client/proxy-pool.js'
import { noLog } from '../helpers.js'
import type { KnownProxy, ProxyFinder } from '../../src/roles/client/proxy-finder.js'
import type { PeerAttestations } from '../../src/tee/peer-attestations.js'
import type { Connection, PeerId, PeerStore } from '@libp2p/interface'


async function newPeerId (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

interface Harness {
  pool: ProxyPool
  directory: PeerDirectory
  merged: Array<{ peer: string, addrs: string[] }>
  attested: string[]
  /** merge:<id> and attest:<id>, in the order they happened */
  events: string[]
  found: KnownProxy[]
  refuse: Map<string, Error>
  connected: Set<string>
}

function harness (): Harness {
  const merged: Harness['merged'] = []
  const attested: string[] = []
  const events: string[] = []
  const found: KnownProxy[] = []
  const refuse = new Map<string, Error>()
  const connected = new Set<string>()
  const verified = new Set<string>()
  const directory = new PeerDirectory()
  const host = {
    peerStore: {
      merge: async (peer: PeerId, data: { multiaddrs?: Array<{ toString(): string }> }) => {
        merged.push({ peer: peer.toString(), addrs: (data.multiaddrs ?? []).map(a => a.toString()) })
        events.push(`merge:${peer.toString()}`)
        return {} as never
      }
    } satisfies Pick<PeerStore, 'merge'>,
    getConnections: (peer?: PeerId): Connection[] => peer != null && connected.has(peer.toString()) ? [{} as Connection] : []
  }
  const attestations = {
    cached: (id: string) => verified.has(id) ? {} as never : undefined,
    attest: async (peer: PeerId) => {
      const id = peer.toString()
      attested.push(id)
      events.push(`attest:${id}`)
      const err = refuse.get(id)
      if (err != null) throw err
      verified.add(id)
      return {} as never
    },
    forget: (id: string) => { verified.delete(id) }
  } as unknown as PeerAttestations
  const finder = { list: () => found } as unknown as ProxyFinder
  return { pool: new ProxyPool(host, finder, directory, attestations, noLog), directory, merged, attested, events, found, refuse, connected }
}

function presence (directory: PeerDirectory, peer: PeerId, addrs: string[]): void {
  directory.upsert({ peerId: peer.toString(), role: Role.PROXY, network: 'local', version: '1', addrs, seq: 1n, source: 'presence' })
}

describe('proxy pool', () => {
  it('stores the addresses presence and the DHT gave before attesting a proxy, so the dial needs no DHT lookup', async () => {
    const h = harness()
    const a = await newPeerId()
    const b = await newPeerId()
    presence(h.directory, a, ['/ip4/127.0.0.1/tcp/4001', 'not a multiaddr'])
    h.found.push({ peerId: b.toString(), addrs: [`/ip4/127.0.0.1/tcp/4002/p2p/${b.toString()}`], foundAtMs: 0 })
    const picked = await h.pool.pick(AbortSignal.timeout(1_000))
    expect([a.toString(), b.toString()]).to.include(picked)
    expect(h.merged).to.deep.include({ peer: a.toString(), addrs: ['/ip4/127.0.0.1/tcp/4001'] })
    expect(h.merged).to.deep.include({ peer: b.toString(), addrs: ['/ip4/127.0.0.1/tcp/4002'] })
    expect(h.attested).to.have.members([a.toString(), b.toString()])
    for (const id of [a.toString(), b.toString()]) expect(h.events.indexOf(`merge:${id}`)).to.be.lessThan(h.events.indexOf(`attest:${id}`))
  })

  it('leaves the peer store alone for a proxy it is already connected to', async () => {
    const h = harness()
    const a = await newPeerId()
    presence(h.directory, a, ['/ip4/127.0.0.1/tcp/4001'])
    h.connected.add(a.toString())
    expect(await h.pool.pick(AbortSignal.timeout(1_000))).to.equal(a.toString())
    expect(h.merged).to.deep.equal([])
  })

  it('says why no proxy is usable', async () => {
    const h = harness()
    await h.pool.pick(AbortSignal.timeout(1_000)).then(() => { throw new Error('picked a proxy that does not exist') }, (err: InferenceError) => {
      expect(err).to.be.instanceOf(InferenceError)
      expect(err.message).to.match(/no proxy is known yet/)
    })
    const a = await newPeerId()
    presence(h.directory, a, [])
    h.refuse.set(a.toString(), new Error('evidence expired'))
    await h.pool.pick(AbortSignal.timeout(1_000)).then(() => { throw new Error('picked a refused proxy') }, (err: InferenceError) => {
      expect(err.code).to.equal('unavailable')
      expect(err.message).to.match(/none of the 1 known proxies/).and.match(/evidence expired/)
    })
  })

  it('sends the next job to the least loaded proxy and keeps a demoted one out', async () => {
    const h = harness()
    const a = await newPeerId()
    const b = await newPeerId()
    presence(h.directory, a, [])
    presence(h.directory, b, [])
    h.pool.jobStarted(a.toString())
    expect(await h.pool.pick(AbortSignal.timeout(1_000))).to.equal(b.toString())
    h.pool.jobStarted(b.toString())
    h.pool.jobStarted(b.toString())
    expect(await h.pool.pick(AbortSignal.timeout(1_000))).to.equal(a.toString())
    h.pool.demote(a.toString())
    expect(await h.pool.pick(AbortSignal.timeout(1_000))).to.equal(b.toString())
    expect(h.pool.status().proxies.find(p => p.peerId === a.toString())?.demotedUntil).to.be.a('string')
  })

  it('prefers a proxy it can already pay, unless that one is much busier', async () => {
    const h = harness()
    const paid = await newPeerId()
    const other = await newPeerId()
    presence(h.directory, paid, [])
    presence(h.directory, other, [])
    const payable = new Set([paid.toString()])
    h.pool.jobStarted(paid.toString())
    // one more job in flight than the other: still the one with a channel
    expect(await h.pool.pick(AbortSignal.timeout(1_000), payable)).to.equal(paid.toString())
    for (let i = 0; i < 4; i++) h.pool.jobStarted(paid.toString())
    // five more: the idle proxy, even if its first job must open a channel
    expect(await h.pool.pick(AbortSignal.timeout(1_000), payable)).to.equal(other.toString())
  })
})

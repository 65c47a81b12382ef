import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'chai'
import { PeerDirectory } from '../../src/p2p/peer-directory.js'
import { PeerLinks } from '../../src/p2p/peer-links.js'
import { Role } from '../../src/gen/node.pb.js'
import { waitFor } from '../helpers.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { Logger, PeerId, PeerInfo } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const noLog = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as unknown as Logger
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
const newPeer = async (): Promise<PeerId> => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))

/** A node that records dials; `reachable` decides which peers answer (an answered dial becomes a connection). */
async function fakeNode (reachable: (peer: string) => boolean): Promise<{ node: CocoonLibp2p, dials: string[], connected: Set<string> }> {
  const peerId = await newPeer()
  const dials: string[] = []
  const connected = new Set<string>()
  const events = new EventTarget()
  const target = (what: PeerId | Multiaddr | Multiaddr[]): string => {
    const ma = Array.isArray(what) ? what[0] : what
    if ('getComponents' in ma) return ma.getComponents().find(c => c.name === 'p2p')?.value ?? ''
    return ma.toString()
  }
  const node = {
    peerId,
    getConnections: () => [...connected].map(id => ({ remotePeer: { toString: () => id } })),
    dial: async (what: PeerId | Multiaddr | Multiaddr[]) => {
      const id = target(what)
      dials.push(id)
      await sleep(1)
      if (!reachable(id)) throw new Error('unreachable')
      connected.add(id)
    },
    addEventListener: events.addEventListener.bind(events),
    removeEventListener: events.removeEventListener.bind(events)
  } as unknown as CocoonLibp2p
  return { node, dials, connected }
}

describe('peer links', () => {
  it('links to proxies a DHT lookup names when presence has named none for a while, and does not look up again at once', async () => {
    const proxies = await Promise.all([1, 2, 3, 4, 5].map(newPeer))
    const { node, dials } = await fakeNode(() => true)
    let lookups = 0
    const links = new PeerLinks(node, new PeerDirectory(), {
      role: Role.PROXY,
      target: 3,
      log: noLog,
      checkIntervalMs: 10,
      lookupGapMs: 100,
      lookup: async function * (): AsyncIterable<PeerInfo> {
        lookups++
        for (const p of proxies) yield { id: p, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/4001')] }
      }
    })
    links.start()
    try {
      await sleep(50)
      expect(lookups, 'presence and /cocoon/info get the first chance').to.equal(0)
      await sleep(100)
      expect(lookups).to.equal(1)
      expect(new Set(dials).size).to.equal(3)
      expect(dials.every(d => proxies.some(p => p.toString() === d))).to.equal(true)
      // connected to all three before presence or /cocoon/info told their role: they count as links
      expect(links.linked()).to.have.length(3)
    } finally {
      links.stop()
    }
  })

  it('backs off its lookups while the swarm has fewer proxies than its target', async () => {
    const [only] = await Promise.all([1].map(newPeer))
    const { node } = await fakeNode(() => true)
    let lookups = 0
    const links = new PeerLinks(node, new PeerDirectory(), {
      role: Role.PROXY,
      target: 3,
      log: noLog,
      checkIntervalMs: 5,
      lookupGapMs: 20,
      lookup: async function * (): AsyncIterable<PeerInfo> {
        lookups++
        yield { id: only, multiaddrs: [multiaddr('/ip4/127.0.0.1/tcp/4001')] }
      }
    })
    links.start()
    try {
      // the first lookup finds the one proxy; every later one finds nobody new
      await waitFor(() => lookups >= 1 && links.linked().length === 1, 2_000, 'the first lookup')
      await waitFor(() => lookups >= 4, 2_000, 'three more lookups')
      expect(links.lookupGap).to.be.at.least(20 * 2 ** 3)
      // 300 ms: with a fixed 20 ms gap that would be about 15 lookups; doubling gives at most 2 more
      const before = lookups
      await sleep(300)
      expect(lookups - before).to.be.at.most(2)
    } finally {
      links.stop()
    }
  })

  it('prefers the proxies presence names, and then needs no lookup', async () => {
    const proxies = await Promise.all([1, 2, 3].map(newPeer))
    const { node, dials } = await fakeNode(() => true)
    const directory = new PeerDirectory()
    for (const p of proxies) {
      directory.upsert({ peerId: p.toString(), role: Role.PROXY, network: 'local', version: '1', addrs: ['/ip4/127.0.0.1/tcp/4001'], seq: 1n, source: 'presence' })
    }
    let lookups = 0
    const links = new PeerLinks(node, directory, {
      role: Role.PROXY,
      target: 3,
      log: noLog,
      checkIntervalMs: 10,
      lookup: async function * (): AsyncIterable<PeerInfo> { lookups++ }
    })
    links.start()
    try {
      await sleep(100)
      expect(new Set(dials)).to.deep.equal(new Set(proxies.map(p => p.toString())))
      expect(lookups).to.equal(0)
    } finally {
      links.stop()
    }
  })

  it('keeps the links it dialled itself, up to its target, and lets other connections to proxies go', async () => {
    const proxies = await Promise.all([1, 2, 3, 4, 5].map(newPeer))
    const { node, dials, connected } = await fakeNode(() => true)
    const directory = new PeerDirectory()
    const links = new PeerLinks(node, directory, { role: Role.PROXY, target: 2, log: noLog, checkIntervalMs: 10 })
    // two proxies known through presence: linked to on purpose
    for (const p of proxies.slice(0, 2)) {
      directory.upsert({ peerId: p.toString(), role: Role.PROXY, network: 'local', version: '1', addrs: ['/ip4/127.0.0.1/tcp/4001'], seq: 1n, source: 'presence' })
    }
    links.start()
    try {
      await sleep(100)
      expect(new Set(dials)).to.deep.equal(new Set(proxies.slice(0, 2).map(p => p.toString())))
      // three more proxies connected for other reasons (a DHT query, a challenge)
      for (const p of proxies.slice(2)) {
        connected.add(p.toString())
        directory.upsert({ peerId: p.toString(), role: Role.PROXY, network: 'local', version: '1', addrs: [], seq: 1n, source: 'info' })
      }
      expect(links.linked()).to.have.length(5)
      expect(proxies.map(p => links.keeps(p.toString()))).to.deep.equal([true, true, false, false, false])
      expect(links.keeps('not-a-connected-peer')).to.equal(false)
      // a kept link drops: another connected proxy is kept in its place, so the node stays at its target
      connected.delete(proxies[0].toString())
      expect(proxies.slice(1).filter(p => links.keeps(p.toString()))).to.have.length(2)
    } finally {
      links.stop()
    }
  })
})

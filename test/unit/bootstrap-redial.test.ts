import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { BootstrapRedial } from '../../src/p2p/bootstrap-redial.js'
import type { BootstrapRedialHost, BootstrapRedialInit } from '../../src/p2p/bootstrap-redial.js'
import type { Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

const noLog = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as unknown as Logger
const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

/** A host that records dials; `reachable` decides whether a dial answers (an answered dial becomes a connection). */
function fakeHost (reachable: () => boolean): { host: BootstrapRedialHost, dials: string[], hangUps: string[], connected: Map<string, number> } {
  const dials: string[] = []
  const hangUps: string[] = []
  /** Peer id to when the connection opened. */
  const connected = new Map<string, number>()
  const idOf = (ma: Multiaddr): string => ma.getComponents().find(c => c.name === 'p2p')?.value ?? ''
  return {
    dials,
    hangUps,
    connected,
    host: {
      getConnections: () => [...connected].map(([id, open]) => ({ remotePeer: id, timeline: { open } })),
      hangUp: async (ma: Multiaddr) => {
        hangUps.push(idOf(ma))
        connected.delete(idOf(ma))
      },
      dial: async (ma: Multiaddr) => {
        const id = idOf(ma)
        dials.push(id)
        await sleep(1)
        if (!reachable()) throw new Error('unreachable')
        connected.set(id, Date.now())
      }
    }
  }
}

/** A redial over one bootstrap peer, checking every 10 ms; `init` adds or overrides options. */
function redialTo (host: BootstrapRedialHost, boot: PeerId, init: Partial<BootstrapRedialInit>): BootstrapRedial {
  return new BootstrapRedial(host, {
    bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${boot.toString()}`],
    log: noLog,
    checkIntervalMs: 10,
    ...init
  })
}

describe('bootstrap redial', () => {
  it('dials the bootstrap peers again while the node has no connection, backing off, and stops once connected', async () => {
    const boot = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    let up = false
    const { host, dials, connected } = fakeHost(() => up)
    const redial = new BootstrapRedial(host, {
      bootstrap: [`/ip4/127.0.0.1/tcp/1/p2p/${boot.toString()}`, '/ip4/127.0.0.1/tcp/2'],
      log: noLog,
      checkIntervalMs: 10,
      redialBackoffMs: 40,
      random: () => 0.5
    })
    expect([...redial.peerIds], 'the bootstrap peers, for the idle-connection keeper').to.deep.equal([boot.toString()])
    redial.start()
    try {
      await sleep(400)
      // backing off 40, 80, 160 ms after each failure: a handful of rounds, not one per check
      expect(dials.length).to.be.within(2, 5)
      // the address without a peer id is never dialled
      expect(new Set(dials)).to.deep.equal(new Set([boot.toString()]))
      up = true
      await sleep(400)
      expect(connected.has(boot.toString())).to.equal(true)
      const settled = dials.length
      await sleep(100)
      expect(dials.length, 'no redial while connected').to.equal(settled)
    } finally {
      redial.stop()
    }
  })

  it('counts a node whose DHT routing table is empty as isolated even with connections', async () => {
    const boot = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { host, dials, connected } = fakeHost(() => true)
    connected.set('a peer that serves no DHT', 0)
    let tableSize = 0
    const redial = redialTo(host, boot, {
      routingTableSize: () => tableSize,
      redialBackoffMs: 40
    })
    expect(redial.isolated()).to.equal(true)
    redial.start()
    try {
      await sleep(60)
      expect(dials).to.include(boot.toString())
      tableSize = 1
      expect(redial.isolated()).to.equal(false)
      await sleep(30)
      const settled = dials.length
      await sleep(100)
      expect(dials.length, 'no redial once the DHT has a peer').to.equal(settled)
    } finally {
      redial.stop()
    }
  })

  it('re-connects to a bootstrap peer it is connected to when the DHT never learned that peer serves it, backing off', async () => {
    const boot = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { host, dials, hangUps, connected } = fakeHost(() => true)
    connected.set(boot.toString(), 0)
    let tableSize = 0
    const redial = redialTo(host, boot, {
      routingTableSize: () => tableSize,
      redialBackoffMs: 40,
      identifyGraceMs: 20,
      random: () => 0.5
    })
    redial.start()
    try {
      await sleep(30)
      // the old connection is closed first: dialling a connected peer would return it unchanged
      expect(hangUps).to.deep.equal([boot.toString()])
      expect(dials).to.deep.equal([boot.toString()])
      expect(connected.has(boot.toString())).to.equal(true)
      // the table stays empty: rounds back off (40, 80, 160 ms), not one per 10 ms check
      await sleep(400)
      expect(dials.length).to.be.within(2, 5)
      tableSize = 1
      await sleep(200)
      const settled = dials.length
      await sleep(100)
      expect(dials.length).to.equal(settled)
    } finally {
      redial.stop()
    }
  })

  it('leaves a new bootstrap connection alone while identify may still fill the routing table', async () => {
    const boot = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const { host, dials, hangUps, connected } = fakeHost(() => true)
    connected.set(boot.toString(), Date.now())
    const redial = redialTo(host, boot, {
      routingTableSize: () => 0,
      redialBackoffMs: 10,
      identifyGraceMs: 150
    })
    redial.start()
    try {
      await sleep(100)
      expect(hangUps, 'within the grace').to.deep.equal([])
      expect(dials).to.deep.equal([])
      await sleep(120)
      // past the grace with the table still empty: closed and dialled afresh
      expect(hangUps).to.deep.equal([boot.toString()])
      expect(dials).to.deep.equal([boot.toString()])
    } finally {
      redial.stop()
    }
  })
})

/**
 * The public network, emulated on loopback: a few plain libp2p nodes serve
 * the Amino DHT protocol (/ipfs/kad/1.0.0) the way public IPFS nodes do.
 * Cocoon nodes given only those as bootstrap peers must find each other
 * through the rendezvous record and meet on the private Cocoon DHT.
 */
import { join } from 'node:path'
import { identify } from '@libp2p/identify'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { AMINO_KAD_PROTOCOL, COCOON_KAD_PROTOCOL } from '../../src/p2p/constants.js'
import { knowThePublishers, startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, plainLoopbackNode, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RoleName } from '../../src/config/role-names.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { Libp2p } from '@libp2p/interface'

async function aminoEmulator (): Promise<Libp2p> {
  return createLibp2p({
    ...plainLoopbackNode(),
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: AMINO_KAD_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper })
    }
  })
}

function routingTableSize (node: RunningNode): number {
  return (node.node.services.dht as unknown as { routingTable: { size: number } }).routingTable.size
}

describe('the public network, emulated on loopback', function () {
  this.timeout(60_000)
  const amino: Libp2p[] = []
  const nodes: RunningNode[] = []

  before(async () => {
    for (let i = 0; i < 3; i++) amino.push(await aminoEmulator())
    // the public DHT is already a connected network
    await amino[1].dial(amino[0].getMultiaddrs()[0])
    await amino[2].dial(amino[0].getMultiaddrs()[0])
    await amino[2].dial(amino[1].getMultiaddrs()[0])
  })

  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await Promise.all(amino.map(async n => { await n.stop() }))
    await cleanupTempDirs()
  })

  it('meets other Cocoon nodes through the Amino rendezvous record, with no Cocoon bootstrap peer', async () => {
    const root = await tempDir()
    const aminoBootstrap = amino.map(n => n.getMultiaddrs()[0].toString())
    const plan: Array<[RoleName, string]> = [['worker', 'worker'], ['proxy', 'proxy'], ['client', 'client']]
    for (const [role, name] of plan) {
      const config = testConfig(role, join(root, name), [], { network: 'public', dht: { addressFilter: 'all' } })
      nodes.push(await startNode(config, { logPrefix: name, aminoBootstrap, rendezvous: { initialDelayMs: 100, fastIntervalMs: 500 } }))
    }
    const [worker, proxy, client] = nodes
    for (const n of nodes) {
      expect(n.node.services.amino, 'amino DHT on a public node').to.not.equal(undefined)
      expect(n.node.services.amino?.getMode()).to.equal('client')
    }

    // the worker (a DHT client) finds the proxy (a server) in the private DHT; the client reaches both
    await waitFor(() => routingTableSize(worker) >= 1, 20_000, 'the proxy in the worker\'s Cocoon routing table')
    await waitFor(() => knowThePublishers(nodes), 20_000, 'presence from the Cocoon bootstrap node and proxy at every other node')
    await waitFor(() => client.node.getConnections(worker.peerId).length + client.node.getConnections(proxy.peerId).length > 0, 10_000, 'the client connected to a Cocoon node it met')

    // Amino peers never enter the Cocoon DHT, and a Cocoon node never serves Amino
    const emulatorIds = new Set(amino.map(a => a.peerId.toString()))
    for (const n of [worker, proxy]) {
      const table = (n.node.services.dht as unknown as { routingTable: { kb: { toIterable(): Iterable<{ peerId: { toString(): string } }> } } }).routingTable
      for (const contact of table.kb.toIterable()) {
        expect(emulatorIds.has(contact.peerId.toString()), 'emulator in Cocoon routing table').to.equal(false)
      }
    }
    expect(proxy.node.getProtocols()).to.include(COCOON_KAD_PROTOCOL)
    expect(proxy.node.getProtocols()).to.not.include(AMINO_KAD_PROTOCOL)
    expect(worker.node.getProtocols()).to.not.include(AMINO_KAD_PROTOCOL)
    expect(worker.rendezvous?.status.rounds).to.be.at.least(1)
    const status = await worker.status()
    expect(status.amino?.routingTableSize).to.be.at.least(1)
  })

  it('never dials loopback or private addresses with the public address filter', async () => {
    const root = await tempDir()
    const config = testConfig('client', join(root, 'strict'), [], { network: 'public', listen: ['/ip4/127.0.0.1/tcp/0'], dht: { addressFilter: 'public' } })
    const strict = await startNode(config, { logPrefix: 'strict', aminoBootstrap: [], rendezvous: { initialDelayMs: 60_000 } })
    nodes.push(strict)
    const target = amino[0].getMultiaddrs()[0]
    const err = await strict.node.dial(target, { signal: AbortSignal.timeout(5_000) }).catch(e => e)
    expect(err).to.be.instanceOf(Error)
    expect(String((err as Error).name) + String((err as Error).message)).to.match(/denied|Denied|gater|no valid addresses/i)
    const lan = await strict.node.dial(multiaddr(`/ip4/192.168.1.1/tcp/4001/p2p/${amino[0].peerId.toString()}`), { signal: AbortSignal.timeout(5_000) }).catch(e => e)
    expect(lan).to.be.instanceOf(Error)
    expect(strict.node.getConnections().length).to.equal(0)
  })
})

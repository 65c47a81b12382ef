import { join } from 'node:path'
import { expect } from 'chai'
import { Role } from '../../src/gen/node.pb.js'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'

describe('nodes behind NAT on the public network', function () {
  this.timeout(30_000)
  const nodes: RunningNode[] = []
  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await cleanupTempDirs()
  })

  it('reserve a slot on a bootstrap relay, are reachable through it, and get a direct connection by hole punching', async () => {
    const root = await tempDir()
    const options = { aminoBootstrap: [], rendezvous: { initialDelayMs: 60_000 } }
    const publicConfig = { network: 'public', dht: { addressFilter: 'all' } }
    const relay = await startNode(testConfig('bootstrap', join(root, 'relay'), [], publicConfig), { ...options, logPrefix: 'relay' })
    nodes.push(relay)
    expect(relay.node.getProtocols()).to.include('/libp2p/circuit/relay/0.2.0/hop')
    const worker = await startNode(testConfig('worker', join(root, 'worker'), relay.addrs(), { ...publicConfig, listen: ['/ip4/127.0.0.1/tcp/0', '/p2p-circuit'] }), { ...options, logPrefix: 'natted' })
    nodes.push(worker)
    await waitFor(() => worker.node.getMultiaddrs().some(ma => ma.toString().includes('/p2p-circuit')), 15_000, 'a relay reservation')
    const circuit = worker.node.getMultiaddrs().find(ma => ma.toString().includes('/p2p-circuit'))!
    expect(circuit.toString()).to.include(relay.peerId.toString())

    // a third node reaches the worker through the relay address alone
    const client = await startNode(testConfig('client', join(root, 'client'), [], { ...publicConfig, listen: [] }), { ...options, logPrefix: 'outsider' })
    nodes.push(client)
    const connection = await client.node.dial(circuit, { signal: AbortSignal.timeout(10_000) })
    expect(connection.remotePeer.equals(worker.peerId)).to.equal(true)
    expect(connection.remoteAddr.toString()).to.include('/p2p-circuit')
    // DCUtR then hole-punches a direct connection next to the relayed one
    await waitFor(() => client.node.getConnections(worker.peerId).some(c => !c.remoteAddr.toString().includes('/p2p-circuit') && c.status === 'open'),
      10_000, 'a direct connection upgraded from the relayed one')
    const info = await client.info.fetch(worker.peerId)
    expect(info.role).to.equal(Role.WORKER)
  })
})

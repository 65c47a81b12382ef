import { join } from 'node:path'
import { expect } from 'chai'
import * as varint from 'uint8-varint'
import { RemoteError } from '../../src/errors.js'
import { INFO_PROTOCOL, PRESENCE_TOPIC } from '../../src/p2p/constants.js'
import { isQuietDhtClient } from '../../src/p2p/dht-client.js'
import { BOOTSTRAP_KEEP_ALIVE_TAG } from '../../src/p2p/node.js'
import { proxyKey } from '../../src/p2p/dht-keys.js'
import { ErrorCode, FramedStream } from '../../src/p2p/framing.js'
import { NodeInfo, Role } from '../../src/gen/node.pb.js'
import { knowThePublishers, startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, heartbeatArrivals, tempDir, testConfig, waitFor } from '../helpers.js'
import type { RoleName } from '../../src/config/role-names.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import { KEEP_ALIVE } from '@libp2p/interface'
import type { PeerId } from '@libp2p/interface'

/** kad-dht's keep-alive tag on its closest peers. */
const KAD_KEEP_ALIVE_TAG = `${KEEP_ALIVE}-kad-dht`

/** Runs a real DHT query (not a peer-store lookup) for `target`; true when it returns the peer. */
async function dhtFindsPeer (from: RunningNode, target: PeerId): Promise<boolean> {
  for await (const event of from.node.services.dht.findPeer(target, { signal: AbortSignal.timeout(3_000) })) {
    if (event.name === 'FINAL_PEER' && event.peer.id.equals(target) && event.peer.multiaddrs.length > 0) return true
  }
  return false
}

describe('a loopback swarm of every role', function () {
  this.timeout(60_000)
  const nodes: RunningNode[] = []
  let root: string
  let bootstrap: RunningNode
  let others: RunningNode[]

  before(async () => {
    root = await tempDir()
    bootstrap = await startNode(testConfig('bootstrap', join(root, 'bootstrap'), [], { admin: { enabled: true, host: '127.0.0.1', port: 0 } }), { logPrefix: 'bootstrap' })
    nodes.push(bootstrap)
    const plan: Array<[RoleName, string]> = [['proxy', 'proxy'], ['worker', 'worker-1'], ['worker', 'worker-2'], ['client', 'client']]
    others = await Promise.all(plan.map(async ([role, name]) => startNode(testConfig(role, join(root, name), bootstrap.addrs()), { logPrefix: name })))
    nodes.push(...others)
  })

  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await cleanupTempDirs()
  })

  it('finds every node through the DHT within 5 s', async () => {
    // bootstrap nodes and proxies serve the DHT; workers and clients only ask
    const servers = nodes.filter(n => n.config.role === 'bootstrap' || n.config.role === 'proxy')
    const askers = nodes.filter(n => n.config.role === 'worker' || n.config.role === 'client')
    const client = nodes.find(n => n.config.role === 'client')!
    const elapsed = await waitFor(async () => {
      for (const from of nodes) {
        for (const target of servers) {
          if (from !== target && !(await dhtFindsPeer(from, target.peerId))) return false
        }
      }
      return true
    }, 5_000, 'every node to find every DHT server through a DHT query')
    expect(elapsed).to.be.below(5_000)

    for (const n of servers) expect(n.node.services.dht.getMode()).to.equal('server')
    for (const n of askers) expect(n.node.services.dht.getMode()).to.equal('client')
    // the client also finds the proxy by its provider record
    const key = await proxyKey()
    const proxy = nodes.find(n => n.config.role === 'proxy')!
    await waitFor(async () => {
      for await (const p of client.node.contentRouting.findProviders(key, { signal: AbortSignal.timeout(2_000) })) {
        if (p.id.equals(proxy.peerId)) return true
      }
      return false
    }, 5_000, 'the client to find the proxy provider record')
    // the bootstrap node and the proxy are known to everyone through presence;
    // workers and clients send none, and are known to the peers they connect
    // to through /cocoon/info (the bootstrap node knows everyone)
    await waitFor(() => knowThePublishers(nodes), 5_000, 'presence from the bootstrap node and the proxy at every node')
    await waitFor(() => bootstrap.directory.get(client.peerId.toString())?.role === Role.CLIENT, 5_000, 'the bootstrap node to know the client')
  })

  it('keeps workers off the presence topic; they learn the proxy and its worker count from /cocoon/info', async () => {
    const proxy = nodes.find(n => n.config.role === 'proxy')!
    const workers = nodes.filter(n => n.config.role === 'worker')
    for (const n of nodes) {
      expect(n.node.services.pubsub.getTopics().includes(PRESENCE_TOPIC), `${n.config.role} on the presence topic`).to.equal(n.config.role !== 'worker')
    }
    await waitFor(() => (proxy.role.workersKnown?.() ?? 0) === workers.length, 10_000, 'the proxy to list both workers')
    for (const w of workers) {
      await w.info.refresh(proxy.peerId)
      const record = w.directory.get(proxy.peerId.toString())
      expect(record?.role).to.equal(Role.PROXY)
      expect(record?.source).to.equal('info')
      expect(record?.workers).to.equal(workers.length)
      expect(w.directory.workersEstimate()).to.equal(workers.length)
      // the proxy's challenge counts as a confirmation though the worker takes no presence
      // (counted once the answer is sent, and after /cocoon/info when the proxy was not known yet)
      const announcing = (): { confirmedBy: number, proxiesKnown: number } => w.role.status().announcing as { confirmedBy: number, proxiesKnown: number }
      await waitFor(() => announcing().confirmedBy === 1, 5_000, 'the worker to count the proxy\'s challenge').catch(() => {})
      expect(announcing().proxiesKnown).to.equal(1)
      expect(announcing().confirmedBy).to.equal(1)
    }
  })

  it('keeps no DHT server connected for the sake of the DHT at a worker or client', async () => {
    const kadKeepAlive = async (n: RunningNode): Promise<number> => {
      let tagged = 0
      for (const peer of await n.node.peerStore.all()) if (peer.tags.has(KAD_KEEP_ALIVE_TAG)) tagged++
      return tagged
    }
    // servers tag their closest peers keep-alive (kad-dht, every 5 s from
    // start; every node has been up that long once the last-started has) ...
    const lastStarted = Math.max(...nodes.map(n => n.startedAtMs))
    await new Promise(resolve => setTimeout(resolve, Math.max(0, lastStarted + 6_000 - Date.now())))
    await waitFor(async () => (await kadKeepAlive(bootstrap)) > 0, 5_000, 'the bootstrap node to tag its closest peers')
    // ... clients do not, and re-walk their routing table hourly, not every 5 min
    for (const n of nodes) {
      const client = n.config.role === 'worker' || n.config.role === 'client'
      expect(isQuietDhtClient(n.node.services.dht), `${n.config.role} quiet`).to.equal(client)
      if (client) expect(await kadKeepAlive(n), `${n.config.role}'s kad keep-alive tags`).to.equal(0)
    }
  })

  it('dials a dropped bootstrap connection again at once', async () => {
    const worker = nodes.find(n => n.config.role === 'worker')!
    expect((await worker.node.peerStore.get(bootstrap.peerId)).tags.has(BOOTSTRAP_KEEP_ALIVE_TAG)).to.equal(true)
    expect(worker.node.getConnections().length, 'the worker\'s other connections').to.be.above(1)
    await bootstrap.node.hangUp(worker.peerId)
    // BootstrapRedial would not (the worker has other connections): libp2p's reconnect queue does
    await waitFor(() => worker.node.getConnections(bootstrap.peerId).length > 0, 5_000, 'the worker to reconnect to the bootstrap node')
  })

  it('delivers a gossip message to every node that takes presence in under 1 s', async () => {
    const listeners = nodes.filter(n => n.config.role !== 'worker')
    await waitFor(() => nodes.every(n => n.node.services.pubsub.getSubscribers(PRESENCE_TOPIC).length > 0), 5_000, 'presence subscriptions')
    // a worker publishes through gossipsub's fanout without taking presence itself
    const sender = others[1]
    expect(sender.config.role).to.equal('worker')
    const { arrivalsMs, missing } = await heartbeatArrivals(sender, listeners, 1_000)
    expect(missing, 'nodes that did not get the heartbeat within 1 s').to.equal(0)
    const slowest = Math.max(...arrivalsMs)
    expect(slowest).to.be.below(1_000)
  })

  it('answers oversized and malformed frames on /cocoon/info with an error and keeps serving', async () => {
    const client = nodes.find(n => n.config.role === 'client')!
    const target = others[0]
    const send = async (bytes: Uint8Array): Promise<unknown> => {
      const stream = await client.node.dialProtocol(target.peerId, INFO_PROTOCOL)
      stream.send(bytes)
      return new FramedStream(stream, { protocol: INFO_PROTOCOL, maxFrameBytes: 64 * 1024, deadlineMs: 3_000 }).read(NodeInfo).catch(e => e)
    }
    const oversized = await send(varint.encode(1024 * 1024))
    expect(oversized).to.be.instanceOf(RemoteError)
    expect((oversized as RemoteError).remoteCode).to.equal(ErrorCode.TOO_LARGE)

    const garbage = Uint8Array.from([3, 0x0a, 0x7f, 0x01])
    const malformed = await send(garbage)
    expect(malformed).to.be.instanceOf(RemoteError)
    expect((malformed as RemoteError).remoteCode).to.equal(ErrorCode.BAD_REQUEST)

    // a flood of junk bigger than the read buffer: the stream is reset, the node lives on
    const stream = await client.node.dialProtocol(target.peerId, INFO_PROTOCOL)
    const junk = new Uint8Array(64 * 1024).fill(0xff)
    for (let i = 0; i < 8 && stream.writeStatus === 'writable'; i++) {
      if (!stream.send(junk)) await stream.onDrain({ signal: AbortSignal.timeout(2_000) }).catch(() => {})
    }

    const info = await client.info.fetch(target.peerId)
    expect(info.role).to.equal(Role.PROXY)
    expect(target.node.status).to.equal('started')
    const metrics = await target.metrics.registry.getSingleMetricAsString('cocoon_protocol_errors_total')
    // the oversized frame and the flood (more than a frame's worth at once) are both TOO_LARGE, never INTERNAL
    expect(metrics).to.match(/code="TOO_LARGE"\} 2/)
    expect(metrics).to.match(/code="BAD_REQUEST"\} 1/)
    expect(metrics).to.not.match(/code="INTERNAL"/)
  })

  it('serves /healthz, /status and /metrics on the admin endpoint', async () => {
    const url = bootstrap.adminUrl!
    expect(url).to.match(/^http:\/\/127\.0\.0\.1:\d+$/)
    const health = await fetch(`${url}/healthz`)
    expect(health.status).to.equal(200)
    const status = await (await fetch(`${url}/status`)).json() as { role: string, peers: Array<{ peerId: string, role: string }>, dht: { routingTableSize: number }, topics: Array<{ topic: string }> }
    expect(status.role).to.equal('bootstrap')
    for (const other of others) {
      expect(status.peers.map(p => p.peerId)).to.include(other.peerId.toString())
    }
    expect(status.peers.find(p => p.peerId === others[0].peerId.toString())?.role).to.equal('proxy')
    // the proxy; workers and the client run the DHT in client mode and are not listed
    expect(status.dht.routingTableSize).to.equal(1)
    expect(status.topics.map(t => t.topic)).to.include(PRESENCE_TOPIC)
    const metrics = await (await fetch(`${url}/metrics`)).text()
    expect(metrics).to.include('cocoon_gossip_validation_total')
    // the bootstrap knows the proxy, both workers and the client
    expect(metrics).to.include('cocoon_known_peers{role="worker"} 2')
    expect(metrics).to.include('cocoon_known_peers{role="proxy"} 1')
    expect(metrics).to.include('cocoon_known_peers{role="client"} 1')
    expect(metrics).to.include('cocoon_node_up 1')
    expect(metrics).to.match(/libp2p_/)
    expect((await fetch(`${url}/nope`)).status).to.equal(404)
  })

  it('keeps its PeerId when restarted on the same data dir', async () => {
    const worker = others[2]
    const id = worker.peerId.toString()
    await worker.stop()
    const again = await startNode(testConfig('worker', worker.config.dataDir, bootstrap.addrs()), { logPrefix: 'worker-2b' })
    nodes.push(again)
    expect(again.peerId.toString()).to.equal(id)
    await waitFor(() => again.node.getConnections().length > 0, 5_000, 'the restarted worker to reconnect')
  })
})

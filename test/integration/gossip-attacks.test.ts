import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { CAPACITY_SHARD_TOPICS, INFO_MAX_FRAME_BYTES, INFO_PROTOCOL, PRESENCE_TOPIC } from '../../src/p2p/constants.js'
import { CapacityAnnouncement, EvidenceKind } from '../../src/gen/capacity.pb.js'
import { request } from '../../src/p2p/framing.js'
import { SCORE_THRESHOLDS } from '../../src/p2p/gossip.js'
import { createCocoonNode } from '../../src/p2p/node.js'
import { InfoRequest, NodeInfo, Presence, Role } from '../../src/gen/node.pb.js'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { RunningNode } from '../../src/roles/runtime.js'

describe('gossip under attack', function () {
  this.timeout(60_000)
  let honest: RunningNode
  let forger: CocoonLibp2p

  /** A node that runs the same stack but none of our validators, connected to the honest one and subscribed to `topic`. */
  async function newForger (topic: string): Promise<CocoonLibp2p> {
    const node = await createCocoonNode({
      privateKey: await generateKeyPair('Ed25519'), network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [],
      dhtServer: true, relayServer: false, addressFilter: 'all'
    })
    node.services.pubsub.subscribe(topic)
    await node.dial(honest.node.getMultiaddrs()[0])
    await waitFor(() => honest.node.services.pubsub.getSubscribers(topic).some(p => p.equals(node.peerId)), 5_000, 'the forger to subscribe')
    return node
  }
  const scoreOf = (peer: CocoonLibp2p): number => (honest.node.services.pubsub as unknown as { getScore(id: string): number }).getScore(peer.peerId.toString())

  /** The honest node hangs up on a graylisted peer and does not let it back in. */
  async function expectKeptOut (peer: CocoonLibp2p): Promise<void> {
    await waitFor(() => honest.node.getConnections(peer.peerId).length === 0, 8_000, 'the honest node to disconnect the graylisted peer')
    const again = await peer.dial(honest.node.getMultiaddrs()[0]).then(() => 'connected', (e: unknown) => e)
    if (again === 'connected') {
      // the connection may open before the gater's verdict closes it: it must not stay
      await waitFor(() => honest.node.getConnections(peer.peerId).length === 0, 3_000, 'the banned peer to be refused again')
    }
    expect(honest.node.getConnections(peer.peerId)).to.have.length(0)
  }

  before(async () => {
    honest = await startNode(testConfig('proxy', join(await tempDir(), 'honest')), { logPrefix: 'honest' })
    forger = await newForger(PRESENCE_TOPIC)
  })

  after(async () => {
    await forger.stop()
    await honest.stop()
    await cleanupTempDirs()
  })

  it('graylists a peer that announces presence for another peer id, disconnects it and keeps it out, and keeps serving', async () => {
    const victim = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const score = (): number => scoreOf(forger)
    expect(score()).to.be.at.least(0)
    for (let i = 0; i < 3; i++) {
      const forged = Presence.encode({
        peerId: victim.toMultihash().bytes, role: Role.WORKER, network: 'local', version: 'x', addrs: [],
        timestampMs: BigInt(Date.now()), seq: BigInt(Date.now()) * 1000n + BigInt(i), intervalMs: 30_000
      })
      await forger.services.pubsub.publish(PRESENCE_TOPIC, forged)
    }
    await waitFor(() => score() < SCORE_THRESHOLDS.graylistThreshold, 5_000, 'the forger score to fall below the graylist threshold')
    expect(honest.directory.get(victim.toString())).to.equal(undefined)
    const metrics = await honest.metrics.registry.getSingleMetricAsString('cocoon_gossip_validation_total')
    expect(metrics).to.match(/result="reject",reason="signer_mismatch"\} 3/)
    await expectKeptOut(forger)
    // the honest node still answers everyone else
    const bystander = await createCocoonNode({
      privateKey: await generateKeyPair('Ed25519'), network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [],
      dhtServer: false, relayServer: false, addressFilter: 'all'
    })
    try {
      await bystander.dial(honest.node.getMultiaddrs()[0])
      expect((await fetchInfoFrom(honest, bystander)).role).to.equal(Role.PROXY)
    } finally {
      await bystander.stop()
    }
  })

  it('returns to its memory baseline after a flood of 3000 ignored messages', async function () {
    const gc = (globalThis as { gc?: () => void }).gc
    if (gc == null) throw new Error('run mocha with --expose-gc (.mocharc.json node-option) to measure memory')
    const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
    const topic = CAPACITY_SHARD_TOPICS[1]
    const spammer = await newForger(topic)
    try {
      const baseline = heap()
      for (let i = 0; i < 3_000; i++) {
        const msg = CapacityAnnouncement.encode({
          peerId: spammer.peerId.toMultihash().bytes, network: 'public', models: [], accelerators: [], attestationKind: EvidenceKind.SIMULATED,
          attestationDigest: new Uint8Array(32), timestampMs: BigInt(Date.now()), seq: BigInt(i + 1), intervalMs: 5_000, addrs: [new Uint8Array(64).fill(i % 256)]
        })
        await spammer.services.pubsub.publish(topic, msg).catch(() => {})
      }
      await expectKeptOut(spammer)
      const after = heap()
      // this process holds the spammer too; the honest node must not keep what it was flooded with
      expect(after - baseline, `heap grew by ${((after - baseline) / 2 ** 20).toFixed(1)} MiB`).to.be.below(8 * 2 ** 20)
    } finally {
      await spammer.stop()
    }
  })

  it('counts a flood of ignored capacity messages against the sender: past a small allowance they are rejected, and it is graylisted and kept out', async () => {
    const topic = CAPACITY_SHARD_TOPICS[0]
    const spammer = await newForger(topic)
    try {
      // another network's announcements: an honest worker's mistake, ignored; a thousand of them are an attack
      for (let i = 0; i < 300; i++) {
        const msg = CapacityAnnouncement.encode({
          peerId: spammer.peerId.toMultihash().bytes, network: 'public', models: [], accelerators: [], attestationKind: EvidenceKind.SIMULATED,
          attestationDigest: new Uint8Array(32), timestampMs: BigInt(Date.now()), seq: BigInt(i + 1), intervalMs: 5_000, addrs: []
        })
        await spammer.services.pubsub.publish(topic, msg).catch(() => {})
      }
      await waitFor(() => scoreOf(spammer) < SCORE_THRESHOLDS.graylistThreshold || honest.node.getConnections(spammer.peerId).length === 0, 10_000, 'the spammer to be graylisted')
      const metrics = await honest.metrics.registry.getSingleMetricAsString('cocoon_gossip_validation_total')
      expect(metrics).to.match(/result="ignore",reason="other_network"\} \d+/)
      await expectKeptOut(spammer)
    } finally {
      await spammer.stop()
    }
  })
})

async function fetchInfoFrom (target: RunningNode, via: CocoonLibp2p): Promise<NodeInfo> {
  return request(via, target.peerId, INFO_PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce: 1n }, { maxFrameBytes: INFO_MAX_FRAME_BYTES })
}

import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { INFO_MAX_FRAME_BYTES, INFO_PROTOCOL, PRESENCE_TOPIC } from '../../src/p2p/constants.js'
import { request } from '../../src/p2p/framing.js'
import { SCORE_THRESHOLDS } from '../../src/p2p/gossip.js'
import { createCocoonNode } from '../../src/p2p/node.js'
import { InfoRequest, NodeInfo, Presence, Role } from '../../src/gen/node.pb.js'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { RunningNode } from '../../src/roles/runtime.js'

describe('gossip under attack', function () {
  this.timeout(30_000)
  let honest: RunningNode
  let forger: CocoonLibp2p

  before(async () => {
    honest = await startNode(testConfig('proxy', join(await tempDir(), 'honest')), { logPrefix: 'honest' })
    // the forger runs the same stack but none of our validators
    forger = await createCocoonNode({
      privateKey: await generateKeyPair('Ed25519'), network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [],
      dhtServer: true, relayServer: false, addressFilter: 'all'
    })
    forger.services.pubsub.subscribe(PRESENCE_TOPIC)
    await forger.dial(honest.node.getMultiaddrs()[0])
    await waitFor(() => honest.node.services.pubsub.getSubscribers(PRESENCE_TOPIC).some(p => p.equals(forger.peerId)), 5_000, 'the forger to subscribe')
  })

  after(async () => {
    await forger.stop()
    await honest.stop()
    await cleanupTempDirs()
  })

  it('graylists a peer that announces presence for another peer id, and keeps serving', async () => {
    const victim = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const score = (): number => (honest.node.services.pubsub as unknown as { getScore(id: string): number }).getScore(forger.peerId.toString())
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
    // the honest node still answers and still accepts honest presence
    expect((await fetchInfoFrom(honest, forger)).role).to.equal(Role.PROXY)
  })
})

async function fetchInfoFrom (target: RunningNode, via: CocoonLibp2p): Promise<NodeInfo> {
  return request(via, target.peerId, INFO_PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce: 1n }, { maxFrameBytes: INFO_MAX_FRAME_BYTES })
}

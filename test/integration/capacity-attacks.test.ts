import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { x25519 } from '@noble/curves/ed25519.js'
import { expect } from 'chai'
import { ATTEST_MAX_FRAME_BYTES, ATTEST_PROTOCOL, CAPACITY_MAX_BYTES, CAPACITY_TOPIC } from '../../src/p2p/constants.js'
import { capacityTopic } from '../../src/p2p/capacity-shards.js'
import { handleRequests } from '../../src/p2p/framing.js'
import { SCORE_THRESHOLDS } from '../../src/p2p/gossip.js'
import { createCocoonNode } from '../../src/p2p/node.js'
import { AttestRequest, AttestResponse, CapacityAnnouncement, EvidenceKind } from '../../src/gen/capacity.pb.js'
import { startNode } from '../../src/roles/runtime.js'
import { evidenceToWire, fetchEvidence } from '../../src/tee/attest-service.js'
import { Attestor } from '../../src/tee/attestor.js'
import { SimulatedProvider, simulatedMeasurements } from '../../src/tee/simulated.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { Evidence } from '../../src/tee/types.js'
import type { Message } from '@libp2p/gossipsub'

/** The shard topic the announcements below (model cocoon-synthetic) travel on. */
const SYNTHETIC_TOPIC = capacityTopic('cocoon-synthetic')

/** How the attacker's /cocoon/attest answers a challenge. */
type AttestMode = 'honest' | 'tampered' | 'copied'

interface Attacker {
  node: CocoonLibp2p
  attestor: Attestor
  mode: AttestMode
  digest: Uint8Array<ArrayBuffer>
}

describe('attested capacity under attack', function () {
  this.timeout(60_000)
  let root: string
  let proxy: RunningNode
  let worker: RunningNode
  const attackers: CocoonLibp2p[] = []

  const proxyRole = (): ProxyRole => proxy.role as ProxyRole
  const score = (peer: CocoonLibp2p): number => (proxy.node.services.pubsub as unknown as { getScore(id: string): number }).getScore(peer.peerId.toString())

  async function rejections (reason: string, node = proxy): Promise<number> {
    const text = await node.metrics.registry.getSingleMetricAsString('cocoon_gossip_validation_total')
    const m = text.match(new RegExp(`topic="${CAPACITY_TOPIC}",result="reject",reason="${reason}"\\} (\\d+)`))
    return m == null ? 0 : Number(m[1])
  }

  /** A node on the same stack that runs none of our validators and answers /cocoon/attest as told. */
  async function attacker (target = proxy): Promise<Attacker> {
    const privateKey = await generateKeyPair('Ed25519')
    const node = await createCocoonNode({
      privateKey, network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], dhtServer: true, relayServer: false, addressFilter: 'all'
    })
    attackers.push(node)
    const attestor = new Attestor({
      provider: new SimulatedProvider(simulatedMeasurements({ buildDigest: randomBytes(32), configDigest: randomBytes(32) })),
      libp2pPublicKey: publicKeyToProtobuf(privateKey.publicKey),
      jobPublicKey: x25519.getPublicKey(x25519.utils.randomSecretKey())
    })
    const a: Attacker = { node, attestor, mode: 'honest', digest: new Uint8Array(await attestor.digest()) }
    await handleRequests(node, {
      protocol: ATTEST_PROTOCOL,
      maxFrameBytes: ATTEST_MAX_FRAME_BYTES,
      request: AttestRequest,
      response: AttestResponse,
      handler: async (req) => {
        let evidence: Evidence
        if (a.mode === 'copied') {
          // relay the challenge to the honest worker and pass its answer off as ours
          evidence = (await fetchEvidence(node, worker.node.getMultiaddrs()[0], req.nonce)).evidence
        } else {
          evidence = await attestor.evidence({ kind: 'nonce', nonce: req.nonce })
          if (a.mode === 'tampered') {
            const quote = evidence.quote.slice()
            quote[184] ^= 0x01 // one bit of MRTD
            evidence = { ...evidence, quote }
          }
        }
        return { evidence: evidenceToWire(evidence) }
      }
    })
    await node.dial(target.node.getMultiaddrs()[0])
    await waitFor(() => node.services.pubsub.getSubscribers(SYNTHETIC_TOPIC).some(p => p.equals(target.peerId)), 5_000, 'the target to show its capacity subscription')
    return a
  }

  function announcement (from: CocoonLibp2p, over: Partial<CapacityAnnouncement> = {}): Uint8Array {
    return CapacityAnnouncement.encode({
      peerId: from.peerId.toMultihash().bytes,
      network: 'local',
      models: [{ name: 'cocoon-synthetic', weightsHash: new Uint8Array(0), contextLength: 2048, pricePromptPerM: 1n, priceCompletionPerM: 1n, maxConcurrent: 4, freeSlots: 4, synthetic: false, description: '' }],
      accelerators: [],
      attestationKind: EvidenceKind.SIMULATED,
      attestationDigest: new Uint8Array(32),
      timestampMs: BigInt(Date.now()),
      seq: BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000)),
      intervalMs: 5_000,
      addrs: [],
      ...over
    })
  }

  /** The honest worker is still in the registry and its announcements still advance. */
  async function honestStillServed (): Promise<void> {
    const registry = proxyRole().registry
    const before = registry.get(worker.peerId.toString())?.seq ?? -1n
    await waitFor(() => (registry.get(worker.peerId.toString())?.seq ?? -1n) > before, 5_000, 'a newer honest announcement to be accepted')
    expect(registry.get(worker.peerId.toString())?.state).to.equal('up')
  }

  before(async () => {
    root = await tempDir()
    proxy = await startNode(testConfig('proxy', join(root, 'proxy')), { logPrefix: 'proxy' })
    worker = await startNode(testConfig('worker', join(root, 'worker'), proxy.addrs(), { worker: { announceIntervalMs: 1_000 } }), { logPrefix: 'worker' })
    await waitFor(() => proxyRole().registry.get(worker.peerId.toString()) != null, 10_000, 'the honest worker in the registry')
  })

  after(async () => {
    await Promise.all(attackers.map(async a => { await a.stop() }))
    await worker?.stop()
    await proxy?.stop()
    await cleanupTempDirs()
  })

  it('rejects an announcement for another peer\'s id, and graylists a forger that repeats it', async () => {
    const a = await attacker()
    for (let i = 0; i < 3; i++) {
      await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(worker.node, { attestationDigest: new Uint8Array(worker.tee?.digest ?? new Uint8Array(32)) }))
    }
    await waitFor(async () => (await rejections('signer_mismatch')) >= 3, 5_000, 'three signer_mismatch rejections')
    await waitFor(() => score(a.node) < SCORE_THRESHOLDS.graylistThreshold, 5_000, 'the forger below the graylist threshold')
    expect(proxyRole().registry.get(a.node.peerId.toString())).to.equal(undefined)
    await honestStillServed()
  })

  it('ignores a replayed old announcement without touching the registry', async () => {
    const pubsub = proxy.node.services.pubsub
    const seen: Message[] = []
    const onMessage = (evt: CustomEvent<Message>): void => { if (evt.detail.topic === SYNTHETIC_TOPIC) seen.push(evt.detail) }
    pubsub.addEventListener('message', onMessage)
    await waitFor(() => seen.length >= 2, 5_000, 'two honest announcements')
    pubsub.removeEventListener('message', onMessage)
    const registry = proxyRole().registry
    const current = registry.get(worker.peerId.toString())?.seq
    // the first one, still validly signed by the worker, delivered again
    expect(await proxyRole().validator.validateGossip(seen[0])).to.equal('ignore')
    expect(registry.get(worker.peerId.toString())?.seq).to.equal(current)
    const text = await proxy.metrics.registry.getSingleMetricAsString('cocoon_gossip_validation_total')
    expect(text).to.match(new RegExp(`topic="${CAPACITY_TOPIC}",result="ignore",reason="replayed"\\} [1-9]`))
  })

  it('rejects a tampered quote, and keeps rejecting it without re-fetching', async () => {
    const a = await attacker()
    a.mode = 'tampered'
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: a.digest }))
    await waitFor(async () => (await rejections('attestation_signature')) >= 1, 5_000, 'an attestation_signature rejection')
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: a.digest }))
    await waitFor(async () => (await rejections('attestation_signature')) >= 2, 5_000, 'a second attestation_signature rejection')
    await waitFor(() => score(a.node) < SCORE_THRESHOLDS.graylistThreshold, 5_000, 'the forger below the graylist threshold')
    const attestations = await proxy.metrics.registry.getSingleMetricAsString('cocoon_attestations_total')
    // one challenge for both messages: the refusal was cached for this peer and digest
    expect(attestations).to.match(/kind="simulated",result="refused",reason="signature"\} 1$/m)
    expect(proxyRole().registry.get(a.node.peerId.toString())).to.equal(undefined)
    await honestStillServed()
  })

  it('rejects evidence copied from another worker (bound to that worker\'s key)', async () => {
    const a = await attacker()
    a.mode = 'copied'
    // claim the honest worker's attestation digest, and relay its evidence when challenged
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: new Uint8Array(worker.tee?.digest ?? new Uint8Array(32)) }))
    await waitFor(async () => (await rejections('attestation_binding')) >= 1, 5_000, 'an attestation_binding rejection')
    expect(proxyRole().registry.get(a.node.peerId.toString())).to.equal(undefined)
    await honestStillServed()
  })

  it('rejects an announcement whose digest is not that of the evidence the worker presents', async () => {
    const a = await attacker()
    const before = await rejections('attestation_binding')
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: new Uint8Array(randomBytes(32)) }))
    await waitFor(async () => (await rejections('attestation_binding')) > before, 5_000, 'an attestation_binding rejection')
    expect(proxyRole().registry.get(a.node.peerId.toString())).to.equal(undefined)
  })

  it('rejects oversized and malformed messages', async () => {
    const a = await attacker()
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, new Uint8Array(randomBytes(CAPACITY_MAX_BYTES + 1)))
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]))
    await waitFor(async () => (await rejections('too_large')) >= 1 && (await rejections('malformed')) >= 1, 5_000, 'too_large and malformed rejections')
    await waitFor(() => score(a.node) < SCORE_THRESHOLDS.graylistThreshold, 5_000, 'the sender below the graylist threshold')
    await honestStillServed()
  })

  it('accepts a well-formed attacker that attests correctly (simulated evidence is allowed on the local network)', async () => {
    // the control case: the same attacker machinery, honest mode, is accepted, so the rejections above are about the attack
    const a = await attacker()
    await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: a.digest }))
    await waitFor(() => proxyRole().registry.get(a.node.peerId.toString()) != null, 5_000, 'the honest-mode peer in the registry')
  })

  it('rejects simulated evidence on a network whose policy forbids it', async () => {
    const strict = await startNode(testConfig('proxy', join(root, 'strict-proxy'), [], { attestation: { acceptSimulated: false } }), { logPrefix: 'strict-proxy' })
    try {
      const a = await attacker(strict)
      await a.node.services.pubsub.publish(SYNTHETIC_TOPIC, announcement(a.node, { attestationDigest: a.digest }))
      await waitFor(async () => (await rejections('attestation_policy', strict)) >= 1, 5_000, 'an attestation_policy rejection')
      expect((strict.role as ProxyRole).registry.size).to.equal(0)
      const attestations = await strict.metrics.registry.getSingleMetricAsString('cocoon_attestations_total')
      expect(attestations, 'refused by kind, without a challenge').to.not.match(/result="verified"/)
    } finally {
      await strict.stop()
    }
  })
})

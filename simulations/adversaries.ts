/**
 * Dishonest peers for the simulator, built from the project's own parts the
 * way an attacker would reuse them:
 * - forged_attestation: a "worker" whose evidence does not verify (one bit of
 *   its quote's MRTD flipped), announcing its model at price 0 every second;
 * - capacity_spam: a peer flooding a capacity topic with announcements that
 *   validation ignores (another network's), many a second;
 * - stops_paying: an honest client that, from some moment on, never signs
 *   another payment but keeps asking for work.
 */
import { randomBytes } from 'node:crypto'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { x25519 } from '@noble/curves/ed25519.js'
import { capacityTopic } from '../src/p2p/capacity-shards.js'
import { ATTEST_MAX_FRAME_BYTES, ATTEST_PROTOCOL } from '../src/p2p/constants.js'
import { handleRequests } from '../src/p2p/framing.js'
import { createCocoonNode } from '../src/p2p/node.js'
import { AttestRequest, AttestResponse, CapacityAnnouncement, EvidenceKind } from '../src/gen/capacity.pb.js'
import { evidenceToWire } from '../src/tee/attest-service.js'
import { Attestor } from '../src/tee/attestor.js'
import { SimulatedProvider, simulatedMeasurements } from '../src/tee/simulated.js'
import type { CocoonLibp2p } from '../src/p2p/node.js'
import type { ClientRole } from '../src/roles/client/client-role.js'
import type { RunningNode } from '../src/roles/runtime.js'
import type { PayerChannel } from '../src/settlement/channels.js'

export interface RogueNode {
  node: CocoonLibp2p
  sent: () => number
  stop: () => Promise<void>
}

export interface RogueInit {
  /** Where to connect: the bootstrap and the proxies (full multiaddrs). */
  dial: string[]
  model: string
  /** capacity_spam: messages a second. */
  ratePerSec: number
}

async function rogueNode (dial: string[]): Promise<CocoonLibp2p> {
  const privateKey = await generateKeyPair('Ed25519')
  const node = await createCocoonNode({
    privateKey, network: 'local', listen: ['/ip4/127.0.0.1/tcp/0'], bootstrap: [], dhtServer: false, relayServer: false, addressFilter: 'all'
  })
  await Promise.all(dial.map(async a => { await node.dial(multiaddr(a), { signal: AbortSignal.timeout(10_000) }).catch(() => {}) }))
  return node
}

function announcement (node: CocoonLibp2p, init: { model: string, network: string, digest: Uint8Array<ArrayBuffer>, seq: bigint }): Uint8Array {
  return CapacityAnnouncement.encode({
    peerId: node.peerId.toMultihash().bytes,
    network: init.network,
    models: [{ name: init.model, weightsHash: new Uint8Array(0), contextLength: 8192, pricePromptPerM: 0n, priceCompletionPerM: 0n, maxConcurrent: 64, freeSlots: 64, synthetic: true, description: '' }],
    accelerators: [],
    attestationKind: EvidenceKind.SIMULATED,
    attestationDigest: init.digest,
    timestampMs: BigInt(Date.now()),
    seq: init.seq,
    intervalMs: 1_000,
    addrs: node.getMultiaddrs().map(ma => ma.decapsulateCode(421).bytes)
  })
}

/** A worker at price 0 whose evidence is tampered with: proxies must refuse it and stop listening to it. */
export async function forgedWorker (init: RogueInit): Promise<RogueNode> {
  const node = await rogueNode(init.dial)
  const privateKey = await generateKeyPair('Ed25519')
  const attestor = new Attestor({
    provider: new SimulatedProvider(simulatedMeasurements({ buildDigest: randomBytes(32), configDigest: randomBytes(32) })),
    libp2pPublicKey: publicKeyToProtobuf(privateKey.publicKey),
    jobPublicKey: x25519.getPublicKey(x25519.utils.randomSecretKey())
  })
  await handleRequests(node, {
    protocol: ATTEST_PROTOCOL,
    maxFrameBytes: ATTEST_MAX_FRAME_BYTES,
    request: AttestRequest,
    response: AttestResponse,
    handler: async (req) => {
      const evidence = await attestor.evidence({ kind: 'nonce', nonce: req.nonce })
      const quote = evidence.quote.slice()
      quote[184] ^= 0x01 // one bit of MRTD
      return { evidence: evidenceToWire({ ...evidence, quote }) }
    }
  })
  const digest = new Uint8Array(await attestor.digest())
  let sent = 0
  const timer = setInterval(() => {
    const seq = BigInt(Date.now()) * 1000n
    node.services.pubsub.publish(capacityTopic(init.model), announcement(node, { model: init.model, network: 'local', digest, seq })).then(() => { sent++ }, () => {})
  }, 1_000)
  return { node, sent: () => sent, stop: async () => { clearInterval(timer); await node.stop() } }
}

/** Announcements from "another network" at `ratePerSec`: each one validation ignores, none it rejects. */
export async function capacitySpammer (init: RogueInit): Promise<RogueNode> {
  const node = await rogueNode(init.dial)
  const digest = new Uint8Array(randomBytes(32))
  let sent = 0
  let seq = BigInt(Date.now()) * 1000n
  const perTick = Math.max(1, Math.round(init.ratePerSec / 10))
  const timer = setInterval(() => {
    for (let i = 0; i < perTick; i++) {
      seq++
      node.services.pubsub.publish(capacityTopic(init.model), announcement(node, { model: init.model, network: 'elsewhere', digest, seq })).then(() => { sent++ }, () => {})
    }
  }, 100)
  return { node, sent: () => sent, stop: async () => { clearInterval(timer); await node.stop() } }
}

/** From now on the client signs no payment: every channel it gets hands out nothing. */
export function stopPaying (client: RunningNode): void {
  const jobs = (client.role as ClientRole).jobs as unknown as { init: { payments?: { payerFor: (proxy: string, signal: AbortSignal) => Promise<PayerChannel> } } }
  const payments = jobs.init.payments
  if (payments == null) throw new Error('this client does not pay (settlement is off)')
  const payerFor = payments.payerFor.bind(payments)
  jobs.init.payments = {
    payerFor: async (proxy, signal) => {
      const channel = await payerFor(proxy, signal)
      return new Proxy(channel, {
        get (target, prop, receiver) {
          if (prop === 'owe' || prop === 'settle') return () => null
          const value = Reflect.get(target, prop, receiver) as unknown
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
        }
      })
    }
  }
}

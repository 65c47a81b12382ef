/**
 * Gossipsub settings for Cocoon topics. Scores are derived from the rate each
 * topic is expected to carry, so they hold both on a loopback swarm (many
 * peers on one IP, few messages) and on the internet.
 */
import { gossipsub } from '@libp2p/gossipsub'
import { createPeerScoreParams, createTopicScoreParams } from '@libp2p/gossipsub/score'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { CAPACITY_SHARD_TOPICS, CAPACITY_SHARDS, GOSSIP_MAX_RPC_BYTES, KNOWN_TOPICS, PRESENCE_INTERVAL_MS, PRESENCE_TOPIC } from './constants.js'
import type { PeerScoreParams, PeerScoreThresholds, TopicScoreParams } from '@libp2p/gossipsub/score'

export { TopicValidatorResult } from '@libp2p/gossipsub'
export type { TopicValidatorFn, GossipSub } from '@libp2p/gossipsub'

/** Messages smaller than this get no IDONTWANT (gossipsub's default is 512 B). */
const GOSSIP_IDONTWANT_MIN_BYTES = 16 * 1024

/**
 * Mesh degree. Each node receives every message about once per mesh peer
 * and forwards it to each, so the degree multiplies the whole swarm's gossip
 * work. Our topics carry small, slow, signed messages, each also repaired by
 * IHAVE gossip and repeated by the next heartbeat: gossipsub's D = 6 (4..12)
 * buys redundancy they do not need, and on a loaded proxy cost a copy of each
 * announcement from most other proxies. 4 (3..8) still keeps several paths
 * between any two peers.
 *
 * Workers and clients connect mostly to the DHT servers (bootstrap nodes and
 * proxies), whose meshes hold at most Dhi of them: most spokes are in no
 * server's mesh and hear a message through lazy gossip (IHAVE, then IWANT).
 * A spoke connected to h servers misses a message only if none of them picks
 * it in any of the 3 heartbeats a message id is gossiped, (1 - factor)^(3h):
 * with gossipsub's factor 0.25 that is 1.3 % at h = 5. (A factor of 0.05
 * left a third of a 300-node swarm without each heartbeat.) Peer exchange on
 * PRUNE, the other way to reach the spokes, made them dial each other and
 * the swarm did not form at 300 nodes.
 */
export const GOSSIP_MESH = { D: 4, Dlo: 3, Dhi: 8, Dscore: 2, Dout: 1 } as const
const GOSSIP_LAZY = 2
const GOSSIP_FACTOR = 0.25

/** Score decays are computed per this interval (gossipsub's default). */
const DECAY_INTERVAL_MS = 1_000

/** Per-tick decay factor that brings a counter to 1% of its value after `ms`. */
export function decayOver (ms: number): number {
  return Math.pow(0.01, DECAY_INTERVAL_MS / ms)
}

export interface TopicProfile {
  /** Messages per second the whole topic carries in normal operation. */
  expectedMessagesPerSecond: number
  /** Relative weight of the topic in a peer's score. */
  weight: number
}

/** Expected rates: presence every 30 s per peer; capacity every few seconds per worker, spread over the shards. */
export const TOPIC_PROFILES: Record<string, TopicProfile> = {
  [PRESENCE_TOPIC]: { expectedMessagesPerSecond: 1000 / PRESENCE_INTERVAL_MS, weight: 0.5 },
  ...Object.fromEntries(CAPACITY_SHARD_TOPICS.map(topic => [topic, { expectedMessagesPerSecond: 1 / CAPACITY_SHARDS, weight: 1 }]))
}

/**
 * Gossipsub's duplicate filter before any work: a message's signature names
 * it (ed25519 signatures are deterministic, and a copy carrying someone
 * else's signature fails verification and is never cached). Without it every
 * copy a node receives from its mesh is signature-checked before it is known
 * to be a duplicate, which cost a fifth of a loaded node's CPU.
 */
export function fastMessageId (msg: { signature?: Uint8Array, from?: Uint8Array, seqno?: Uint8Array, topic: string }): string {
  if (msg.signature != null && msg.signature.byteLength > 0) return uint8ArrayToString(msg.signature, 'base64')
  // unsigned messages are rejected under StrictSign anyway; keep them apart by what they claim
  return `${msg.topic}/${uint8ArrayToString(msg.from ?? new Uint8Array(0), 'base64')}/${uint8ArrayToString(msg.seqno ?? new Uint8Array(0), 'base64')}`
}

/**
 * Topic score parameters from an expected rate.
 *
 * - P1 (time in mesh) counts in seconds, not gossipsub's 1 ms default, which
 *   would saturate at once and hide every penalty.
 * - P2 (first deliveries) rewards forwarding new messages, capped at what an
 *   honest peer could deliver in ten minutes.
 * - P3 (mesh delivery deficit) is off: these topics are slow and bursty
 *   (a new worker, a price change), so a quiet mesh peer is not a bad one.
 * - P4 (invalid messages) is steep: three rejected messages take a peer below
 *   the graylist threshold, and the count decays over an hour.
 */
export function topicScoreParams (profile: TopicProfile): TopicScoreParams {
  const perTenMinutes = Math.max(10, profile.expectedMessagesPerSecond * 600)
  return createTopicScoreParams({
    topicWeight: profile.weight,
    timeInMeshWeight: 0.01,
    timeInMeshQuantum: 1_000,
    timeInMeshCap: 3_600,
    firstMessageDeliveriesWeight: 10 / perTenMinutes,
    firstMessageDeliveriesDecay: decayOver(60 * 60_000),
    firstMessageDeliveriesCap: perTenMinutes,
    meshMessageDeliveriesWeight: 0,
    meshMessageDeliveriesDecay: decayOver(60_000),
    meshMessageDeliveriesCap: 10,
    meshMessageDeliveriesThreshold: 1,
    meshMessageDeliveriesWindow: 100,
    meshMessageDeliveriesActivation: 60_000,
    meshFailurePenaltyWeight: 0,
    meshFailurePenaltyDecay: decayOver(60_000),
    invalidMessageDeliveriesWeight: -30 / profile.weight,
    invalidMessageDeliveriesDecay: decayOver(60 * 60_000)
  })
}

export const SCORE_THRESHOLDS: PeerScoreThresholds = {
  gossipThreshold: -10,
  publishThreshold: -50,
  graylistThreshold: -80,
  acceptPXThreshold: 10,
  opportunisticGraftThreshold: 2
}

export interface GossipInit {
  /**
   * IPs that host many honest peers (loopback in a local swarm). Gossipsub
   * otherwise penalises more than ten peers on one IP.
   */
  colocationWhitelist: string[]
}

export function peerScoreParams (init: GossipInit): Partial<PeerScoreParams> {
  const topics: Record<string, TopicScoreParams> = {}
  for (const [topic, profile] of Object.entries(TOPIC_PROFILES)) {
    topics[topic] = topicScoreParams(profile)
  }
  return createPeerScoreParams({
    topics,
    topicScoreCap: 50,
    IPColocationFactorWeight: -20,
    IPColocationFactorThreshold: 10,
    IPColocationFactorWhitelist: new Set(init.colocationWhitelist),
    behaviourPenaltyWeight: -10,
    behaviourPenaltyThreshold: 6,
    behaviourPenaltyDecay: decayOver(10 * 60_000),
    decayInterval: DECAY_INTERVAL_MS,
    decayToZero: 0.01,
    retainScore: 60 * 60_000
  })
}

/** The gossipsub service for a Cocoon node: signed messages only, Cocoon topics only. */
export function cocoonGossipsub (init: GossipInit): ReturnType<typeof gossipsub> {
  return gossipsub({
    globalSignaturePolicy: 'StrictSign',
    allowPublishToZeroTopicPeers: true,
    emitSelf: false,
    floodPublish: true,
    fastMsgIdFn: fastMessageId,
    ...GOSSIP_MESH,
    Dlazy: GOSSIP_LAZY,
    gossipFactor: GOSSIP_FACTOR,
    // IDONTWANT saves bandwidth on large messages; ours are under 4 KiB, where
    // telling every mesh peer "don't send it" costs more sends than it saves
    idontwantMinDataSize: GOSSIP_IDONTWANT_MIN_BYTES,
    allowedTopics: KNOWN_TOPICS,
    maxInboundDataLength: GOSSIP_MAX_RPC_BYTES,
    scoreParams: peerScoreParams(init),
    scoreThresholds: SCORE_THRESHOLDS
  })
}

/**
 * A peer's gossipsub score. The service's public interface does not carry
 * `getScore`; its implementation does (0, no opinion, if that ever changes).
 */
export function gossipScore (pubsub: unknown, peer: string): number {
  const impl = pubsub as { getScore?: (peer: string) => number }
  return typeof impl.getScore === 'function' ? impl.getScore(peer) : 0
}

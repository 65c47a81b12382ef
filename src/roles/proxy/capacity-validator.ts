/**
 * The gossipsub topic validator for `cocoon/1/capacity`, and the same checks
 * for announcements that come straight from a worker (DHT lookups).
 *
 * Reject (the sender loses gossip score) for what an honest node never sends
 * or forwards: oversized, undecodable or unsigned messages, an announcement
 * for another peer's id, out-of-range fields, and evidence that does not
 * verify. Ignore (no penalty) for what an honest node can cause by being late
 * or elsewhere: stale or replayed sequence numbers, another network, a clock
 * off by more than the tolerance, a worker we cannot reach to attest.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { multiaddr } from '@multiformats/multiaddr'
import { equals } from 'uint8arrays/equals'
import { toString as toHex } from 'uint8arrays/to-string'
import { AttestationError } from '../../errors.js'
import { CAPACITY_TOPIC } from '../../p2p/constants.js'
import { TopicValidatorResult } from '../../p2p/gossip.js'
import { kindFromWire } from '../../tee/attest-service.js'
import { ACCEPT, checkFields, decodeAnnouncement, ignore, reject } from '../capacity/announcement.js'
import type { PeerAttestations } from '../../tee/peer-attestations.js'
import type { WorkerEntry, WorkerRegistry } from './worker-registry.js'
import type { Verdict } from '../capacity/announcement.js'
import type { NodeMetrics } from '../../p2p/metrics.js'
import type { EvidenceKind } from '../../tee/types.js'
import type { Message } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface CapacityValidatorInit {
  /** Remember where to dial a worker (its announced addresses), before it is challenged. */
  learnAddrs?: (peer: PeerId, addrs: Multiaddr[]) => Promise<void>
  network: string
  /** Evidence kinds the network's policy accepts: others are refused without a challenge. */
  acceptKinds: EvidenceKind[]
  now?: () => number
  metrics?: NodeMetrics
}

export class CapacityValidator {
  private readonly registry: WorkerRegistry
  private readonly attestations: PeerAttestations
  private readonly init: CapacityValidatorInit
  private readonly now: () => number
  /** The last accepted announcement per worker, by hash: the same one on another shard topic is passed on, not re-checked. */
  private readonly lastAccepted = new Map<string, { seq: bigint, hash: string }>()
  /** The addresses last handed to `learnAddrs` per worker: unchanged ones are not written to the peer store again. */
  private readonly learned = new Map<string, string>()

  constructor (registry: WorkerRegistry, attestations: PeerAttestations, init: CapacityValidatorInit) {
    this.registry = registry
    this.attestations = attestations
    this.init = init
    this.now = init.now ?? Date.now
  }

  /** The topic validator: decides, counts, and records accepted announcements. */
  async validateGossip (message: Message): Promise<TopicValidatorResult> {
    const verdict = message.type !== 'signed'
      ? reject('unsigned')
      : await this.accept(message.from, message.data, 'gossip')
    this.count(verdict)
    return verdict.result
  }

  /**
   * Checks an announcement from `sender` (the gossip signer, or the peer that
   * answered a direct request) and records it in the registry when it passes.
   */
  async accept (sender: PeerId, bytes: Uint8Array, source: WorkerEntry['source']): Promise<Verdict> {
    const decoded = decodeAnnouncement(bytes)
    const a = decoded.announcement
    if (a == null) return decoded.verdict
    if (!equals(a.peerId, sender.toMultihash().bytes)) return reject('signer_mismatch')
    const fields = checkFields(a, this.init.network, this.now())
    if (fields.result !== TopicValidatorResult.Accept) return fields
    const id = sender.toString()
    const last = this.lastAccepted.get(id)
    if (last != null && a.seq === last.seq && this.registry.get(id) != null) {
      // a worker serving models on several shards publishes the same announcement on each
      return last.hash === toHex(sha256(bytes), 'base16') ? ACCEPT : ignore('replayed')
    }
    if (a.seq <= this.registry.lastSeq(id)) return ignore('replayed')
    // each heartbeat carries the addresses; the peer store write (a lock, a
    // decode and a compare) is only worth it when they changed since the
    // last accepted announcement
    const addrsKey = a.addrs.map(b => toHex(b, 'base16')).join(',')
    if (a.addrs.length > 0 && this.init.learnAddrs != null && this.learned.get(id) !== addrsKey) {
      await this.init.learnAddrs(sender, a.addrs.map(b => multiaddr(b))).catch(() => {})
    }

    const kind = kindFromWire(a.attestationKind)
    if (kind == null) return reject('unknown_evidence_kind')
    if (!this.init.acceptKinds.includes(kind)) return reject('attestation_policy')
    let attestation
    try {
      attestation = (await this.attestations.attest(sender, a.attestationDigest)).attestation
    } catch (err) {
      return attestationVerdict(err)
    }
    // another announcement from this worker may have been accepted while we waited
    if (a.seq <= this.registry.lastSeq(id)) return ignore('replayed')
    this.registry.update(id, a, attestation, source)
    this.lastAccepted.set(id, { seq: a.seq, hash: toHex(sha256(bytes), 'base16') })
    // kept for accepted workers only (forgotten with them), so unattested senders cannot grow it
    this.learned.set(id, addrsKey)
    return ACCEPT
  }

  /** Forgets a worker that left the registry. */
  forget (peerId: string): void {
    this.lastAccepted.delete(peerId)
    this.learned.delete(peerId)
  }

  /** Counts a verdict from outside the gossip path (DHT lookups). */
  count (verdict: Verdict): void {
    const reason = verdict.result === TopicValidatorResult.Accept ? 'ok' : verdict.reason
    this.init.metrics?.gossipValidation.inc({ topic: CAPACITY_TOPIC, result: verdict.result, reason })
  }
}

/** Refused evidence is the worker's fault (Reject); an unreachable worker may be anyone's (Ignore). */
export function attestationVerdict (err: unknown): Verdict {
  return err instanceof AttestationError ? reject(`attestation_${err.reason}`) : ignore('attestation_unreachable')
}

/**
 * Attests peers on demand and remembers the outcome. A peer is challenged
 * with a fresh random nonce over /cocoon/attest; its evidence must verify
 * against the peer's own libp2p key (the one noise authenticated), that nonce
 * and the network's policy. Then:
 *
 * - a verified attestation is kept per peer for ATTESTATION_TTL_MS, so each
 *   worker is challenged once per attestation digest, not per announcement;
 * - a refusal is kept per (peer, digest) for ATTESTATION_FAILURE_TTL_MS, so a
 *   forger that keeps announcing costs one verification, not one per message;
 * - concurrent requests for one peer share a single challenge, and at most
 *   ATTEST_PARALLEL challenges run at once (others queue, ATTEST_QUEUE_MAX
 *   at most);
 * - a peer that could not be reached is not challenged again for a backoff
 *   that doubles with each failure (ATTEST_RETRY_BACKOFF_MS up to
 *   ATTEST_RETRY_BACKOFF_MAX_MS), so a slow or vanished worker that keeps
 *   being announced does not cost a dial per announcement.
 *
 * Refused evidence throws AttestationError; an unreachable or slow peer
 * throws whatever the transport threw (the caller cannot blame the peer).
 */
import { randomBytes } from 'node:crypto'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { Queue } from '@libp2p/utils'
import { equals } from 'uint8arrays/equals'
import { toString as toHex } from 'uint8arrays/to-string'
import {
  ATTEST_PARALLEL, ATTEST_QUEUE_MAX, ATTEST_RETRY_BACKOFF_MAX_MS, ATTEST_RETRY_BACKOFF_MS, ATTESTATION_FAILURE_TTL_MS, ATTESTATION_TTL_MS,
  CAPACITY_ATTEST_TIMEOUT_MS
} from '../p2p/constants.js'
import { AttestationError } from '../errors.js'
import { fetchEvidence } from './attest-service.js'
import type { ProtocolHost } from '../p2p/framing.js'
import type { NodeMetrics } from '../p2p/metrics.js'
import type { EvidenceVerifier } from './attestor.js'
import type { Evidence, VerifiedAttestation } from './types.js'
import type { Logger, PeerId } from '@libp2p/interface'

/** The checking side of attestation, as this cache needs it. */
export type EvidenceChecker = Pick<EvidenceVerifier, 'verify'>

export interface AttestedPeer {
  attestation: VerifiedAttestation
  /** The capacity announcement the peer sent with its evidence, if any. */
  capacity?: Uint8Array
}

export interface PeerAttestationsInit {
  verifier: EvidenceChecker
  now?: () => number
  ttlMs?: number
  failureTtlMs?: number
  timeoutMs?: number
  metrics?: NodeMetrics
  log: Logger
  /**
   * Given, challenges also ask for the peer's epoch evidence (one request
   * instead of two) and hand it here once the challenge itself verified.
   */
  onEpochEvidence?: (peerId: string, evidence: Evidence) => void
}

export class PeerAttestations {
  private readonly host: Pick<ProtocolHost, 'dialProtocol'>
  private readonly init: PeerAttestationsInit
  private readonly now: () => number
  private readonly verified = new Map<string, { peer: AttestedPeer, expiresAtMs: number }>()
  private readonly refused = new Map<string, { error: AttestationError, expiresAtMs: number }>()
  private readonly inFlight = new Map<string, Promise<AttestedPeer>>()
  private readonly unreachable = new Map<string, { untilMs: number, backoffMs: number, error: Error }>()
  private readonly challenges = new Queue<AttestedPeer>({ concurrency: ATTEST_PARALLEL, maxSize: ATTEST_QUEUE_MAX })

  constructor (host: Pick<ProtocolHost, 'dialProtocol'>, init: PeerAttestationsInit) {
    this.host = host
    this.init = init
    this.now = init.now ?? Date.now
  }

  /** Peers being challenged now or waiting for a challenge slot. */
  get pending (): number {
    return this.inFlight.size
  }

  /** The cached attestation of a peer, if still valid. */
  cached (peerId: string): VerifiedAttestation | undefined {
    const hit = this.verified.get(peerId)
    return hit != null && hit.expiresAtMs > this.now() ? hit.peer.attestation : undefined
  }

  /**
   * The peer's verified attestation. With `digest`, the cached one is used only
   * when it has that digest, and fresh evidence must have it too (an
   * announcement naming evidence the worker does not have is a lie).
   * `fresh` skips the cache: a new challenge, and the peer's current capacity.
   */
  async attest (peer: PeerId, digest?: Uint8Array, options: { fresh?: boolean } = {}): Promise<AttestedPeer> {
    const id = peer.toString()
    const nowMs = this.now()
    const hit = options.fresh === true ? undefined : this.verified.get(id)
    if (hit != null && hit.expiresAtMs > nowMs && (digest == null || equals(hit.peer.attestation.digest, digest))) return hit.peer
    const refusalKey = digest == null ? undefined : `${id}/${toHex(digest, 'base16')}`
    const refusal = refusalKey == null ? undefined : this.refused.get(refusalKey)
    if (refusal != null && refusal.expiresAtMs > nowMs) throw refusal.error

    let pending = this.inFlight.get(id)
    if (pending == null) {
      const away = this.unreachable.get(id)
      if (away != null && away.untilMs > nowMs) throw away.error
      pending = this.challenges.add(async () => this.challenge(peer)).then(attested => {
        this.unreachable.delete(id)
        return attested
      }, (err: unknown) => {
        if (!(err instanceof AttestationError)) {
          const backoffMs = Math.min(ATTEST_RETRY_BACKOFF_MAX_MS, away == null ? ATTEST_RETRY_BACKOFF_MS : away.backoffMs * 2)
          this.unreachable.set(id, { untilMs: this.now() + backoffMs, backoffMs, error: err as Error })
        }
        throw err
      }).finally(() => { this.inFlight.delete(id) })
      this.inFlight.set(id, pending)
    }
    try {
      const attested = await pending
      if (digest != null && !equals(attested.attestation.digest, digest)) {
        throw new AttestationError('binding', `the announced attestation digest ${toHex(digest, 'base16').slice(0, 16)}… is not the one of the evidence ${peer.toString()} presents`)
      }
      return attested
    } catch (err) {
      if (err instanceof AttestationError && refusalKey != null) {
        this.refused.set(refusalKey, { error: err, expiresAtMs: this.now() + (this.init.failureTtlMs ?? ATTESTATION_FAILURE_TTL_MS) })
      }
      throw err
    }
  }

  /** Forgets a peer (e.g. after it misbehaved in a job), so the next use re-attests it. */
  forget (peerId: string): void {
    this.verified.delete(peerId)
  }

  /** Drops expired entries; call now and then. */
  prune (): void {
    const nowMs = this.now()
    for (const [id, v] of this.verified) if (v.expiresAtMs <= nowMs) this.verified.delete(id)
    for (const [key, r] of this.refused) if (r.expiresAtMs <= nowMs) this.refused.delete(key)
    // kept past its backoff so the next failure doubles it; forgotten once a full max backoff has passed
    for (const [id, u] of this.unreachable) if (u.untilMs + ATTEST_RETRY_BACKOFF_MAX_MS <= nowMs) this.unreachable.delete(id)
  }

  private async challenge (peer: PeerId): Promise<AttestedPeer> {
    if (peer.publicKey == null) throw new AttestationError('binding', `${peer.toString()} does not carry its public key in its id`)
    const nonce = new Uint8Array(randomBytes(32))
    let fetched
    try {
      fetched = await fetchEvidence(this.host, peer, nonce, {
        deadlineMs: this.init.timeoutMs ?? CAPACITY_ATTEST_TIMEOUT_MS,
        withEpochEvidence: this.init.onEpochEvidence != null
      })
    } catch (err) {
      this.init.metrics?.attestations.inc({ kind: 'unknown', result: 'unreachable', reason: (err as { code?: string }).code ?? 'error' })
      throw err
    }
    try {
      const attestation = await this.init.verifier.verify(fetched.evidence, {
        libp2pPublicKey: publicKeyToProtobuf(peer.publicKey),
        freshness: { kind: 'nonce', nonce }
      })
      this.init.metrics?.attestationSeconds.observe({ kind: attestation.kind }, attestation.durationMs / 1000)
      this.init.metrics?.attestations.inc({ kind: attestation.kind, result: 'verified', reason: 'ok' })
      const attested: AttestedPeer = { attestation, capacity: fetched.capacity }
      this.verified.set(peer.toString(), { peer: attested, expiresAtMs: this.now() + (this.init.ttlMs ?? ATTESTATION_TTL_MS) })
      if (fetched.epochEvidence != null) this.init.onEpochEvidence?.(peer.toString(), fetched.epochEvidence)
      return attested
    } catch (err) {
      const reason = err instanceof AttestationError ? err.reason : 'error'
      this.init.metrics?.attestations.inc({ kind: fetched.evidence.kind, result: 'refused', reason })
      this.init.log('evidence from %p refused - %s', peer, (err as Error).message)
      if (err instanceof AttestationError) throw err
      throw new AttestationError('malformed', (err as Error).message, { cause: err })
    }
  }
}

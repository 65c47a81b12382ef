/**
 * Both ends of attestation. The `Attestor` makes this node's evidence: a
 * quote whose REPORTDATA binds the node's libp2p key, job key and a
 * freshness value. The `EvidenceVerifier` checks a peer's evidence in order
 * of cost and meaning: the network must accept the kind at all, the quote
 * must verify, it must commit to the peer we are talking to and to the
 * freshness we expect, and its measurements and TCB must satisfy the policy.
 */
import { equalBytes } from '@noble/curves/utils.js'
import { AttestationError } from '../errors.js'
import { attestationDigest, epochAt, imageHash, JOB_KEY_LENGTH, reportDataFor } from './binding.js'
import { assertLength, parseTdxQuote, REPORT_DATA_LENGTH } from './quote.js'
import { checkPolicy } from './policy.js'
import { EVIDENCE_KINDS } from './types.js'
import type {
  AttestationPolicy, Evidence, EvidenceKind, EvidenceProvider, Freshness, Measurements, QuoteVerifier, VerifiedAttestation
} from './types.js'

export interface AttestorInit {
  provider: EvidenceProvider
  /** This node's libp2p public key, protobuf-encoded. */
  libp2pPublicKey: Uint8Array
  /** This node's X25519 job-encryption public key (32 bytes). */
  jobPublicKey: Uint8Array
  /** What the provider reports; read from a quote when left out. */
  measurements?: Measurements
}

/** Epoch evidence kept per epoch: the current one and the next a clock edge may ask for. */
const EPOCHS_KEPT = 2

/** This node's side: makes evidence and the digest announcements carry. */
export class Attestor {
  readonly kind: EvidenceKind
  private readonly provider: EvidenceProvider
  private readonly libp2pPublicKey: Uint8Array
  private readonly jobPublicKey: Uint8Array
  private measured?: Promise<Measurements>
  private digested?: Promise<Uint8Array>
  private readonly byEpoch = new Map<number, Promise<Evidence>>()

  constructor (init: AttestorInit) {
    assertLength(init.jobPublicKey, JOB_KEY_LENGTH, 'job public key')
    this.provider = init.provider
    this.kind = init.provider.kind
    this.libp2pPublicKey = init.libp2pPublicKey.slice()
    this.jobPublicKey = init.jobPublicKey.slice()
    if (init.measurements != null) this.measured = Promise.resolve(init.measurements)
  }

  /**
   * Evidence bound to `freshness`. Epoch evidence is made once per epoch and
   * shared, since anyone may ask for it at any rate; nonce evidence is made
   * per call, as each nonce is new.
   */
  async evidence (freshness: Freshness): Promise<Evidence> {
    if (freshness.kind !== 'epoch') return this.makeEvidence(freshness)
    let pending = this.byEpoch.get(freshness.epoch)
    if (pending == null) {
      pending = this.makeEvidence(freshness)
      this.byEpoch.set(freshness.epoch, pending)
      // A failed quote is not cached: the next caller tries again.
      const mine = pending
      mine.catch(() => { if (this.byEpoch.get(freshness.epoch) === mine) this.byEpoch.delete(freshness.epoch) })
      for (const epoch of [...this.byEpoch.keys()].sort((a, b) => a - b).slice(0, -EPOCHS_KEPT)) this.byEpoch.delete(epoch)
    }
    return { ...(await pending) }
  }

  /** attestationDigest() of this node's evidence: the same for every freshness. */
  async digest (): Promise<Uint8Array> {
    if (this.digested == null) {
      this.digested = this.measurements().then(measurements => attestationDigest({
        kind: this.kind, measurements, jobPublicKey: this.jobPublicKey, libp2pPublicKey: this.libp2pPublicKey
      }))
      this.digested.catch(() => { this.digested = undefined })
    }
    return (await this.digested).slice()
  }

  /** The measurements this node's quotes report, read once from a quote over zero REPORTDATA if not given. */
  async measurements (): Promise<Measurements> {
    if (this.measured == null) {
      this.measured = this.provider.quote(new Uint8Array(REPORT_DATA_LENGTH)).then(quote => parseTdxQuote(quote).measurements)
      this.measured.catch(() => { this.measured = undefined })
    }
    return this.measured
  }

  private async makeEvidence (freshness: Freshness): Promise<Evidence> {
    const reportData = reportDataFor({ libp2pPublicKey: this.libp2pPublicKey, jobPublicKey: this.jobPublicKey, freshness })
    const quote = await this.provider.quote(reportData)
    return { kind: this.kind, quote, jobPublicKey: this.jobPublicKey.slice(), freshness }
  }
}

export interface EvidenceVerifierInit {
  policy: AttestationPolicy
  /** One verifier per evidence kind this node can check. */
  verifiers: QuoteVerifier[]
  now?: () => number
}

export interface ExpectedBinding {
  /** The libp2p public key (protobuf) of the peer the evidence came from, as authenticated by the connection. */
  libp2pPublicKey: Uint8Array
  /** The nonce we sent, or 'epoch' for evidence passed around without a challenge. */
  freshness: Freshness | 'epoch'
}

/** A verified attestation and how long checking it took (for metrics). */
export type TimedAttestation = VerifiedAttestation & { durationMs: number }

/** The checking side. Every refusal is an AttestationError whose reason says which check failed. */
export class EvidenceVerifier {
  readonly policy: AttestationPolicy
  private readonly verifiers = new Map<EvidenceKind, QuoteVerifier>()
  private readonly now: () => number

  constructor (init: EvidenceVerifierInit) {
    this.policy = init.policy
    this.now = init.now ?? Date.now
    for (const v of init.verifiers) {
      if (this.verifiers.has(v.kind)) throw new Error(`two quote verifiers for ${v.kind} evidence`)
      this.verifiers.set(v.kind, v)
    }
  }

  async verify (evidence: Evidence, expected: ExpectedBinding): Promise<TimedAttestation> {
    const started = performance.now()
    if (!EVIDENCE_KINDS.includes(evidence.kind)) {
      throw new AttestationError('malformed', `unknown evidence kind ${JSON.stringify(evidence.kind)}`)
    }
    // Before any expensive work: a network that refuses the kind need not look at the quote.
    if (!this.policy.acceptKinds.includes(evidence.kind)) {
      throw new AttestationError('policy', `${evidence.kind} evidence is not accepted on the ${this.policy.name} network`)
    }
    const verifier = this.verifiers.get(evidence.kind)
    if (verifier == null) throw new AttestationError('unavailable', `this node has no verifier for ${evidence.kind} evidence`)

    const nowMs = this.now()
    const quote = await verifier.verify(evidence.quote, nowMs)
    if (quote.kind !== evidence.kind) {
      throw new AttestationError('malformed', `evidence says ${evidence.kind} but its quote is ${quote.kind}`)
    }
    const reportData = reportDataFor({ libp2pPublicKey: expected.libp2pPublicKey, jobPublicKey: evidence.jobPublicKey, freshness: evidence.freshness })
    if (!equalBytes(quote.reportData, reportData)) {
      throw new AttestationError('binding', 'the quote\'s REPORTDATA does not commit to this peer\'s libp2p key, the job key and the freshness presented with it')
    }
    checkFreshness(evidence.freshness, expected.freshness, nowMs, this.policy.epochTolerance)
    checkPolicy(this.policy, quote)

    return {
      kind: quote.kind,
      measurements: quote.measurements,
      imageHash: imageHash(quote.measurements),
      jobPublicKey: evidence.jobPublicKey.slice(),
      digest: attestationDigest({ kind: quote.kind, measurements: quote.measurements, jobPublicKey: evidence.jobPublicKey, libp2pPublicKey: expected.libp2pPublicKey }),
      tcbStatus: quote.tcbStatus,
      advisoryIds: quote.advisoryIds,
      verifiedAtMs: nowMs,
      durationMs: performance.now() - started
    }
  }
}

function checkFreshness (actual: Freshness, expected: Freshness | 'epoch', nowMs: number, tolerance: number): void {
  if (expected === 'epoch') {
    if (actual.kind !== 'epoch') throw new AttestationError('freshness', 'expected epoch-bound evidence, got nonce-bound evidence')
    const current = epochAt(nowMs)
    if (Math.abs(actual.epoch - current) > tolerance) {
      throw new AttestationError('freshness', `evidence is for epoch ${actual.epoch}, the current epoch is ${current} (tolerance ${tolerance})`)
    }
    return
  }
  if (expected.kind === 'epoch') {
    if (actual.kind !== 'epoch' || actual.epoch !== expected.epoch) {
      throw new AttestationError('freshness', `evidence is not bound to the expected epoch ${expected.epoch}`)
    }
    return
  }
  if (actual.kind !== 'nonce' || !equalBytes(actual.nonce, expected.nonce)) {
    throw new AttestationError('freshness', 'evidence is not bound to the nonce we sent')
  }
}

/**
 * Attestation types shared by providers (who make evidence), verifiers (who
 * check quotes), the policy, and the protocol and gossip layers above them.
 *
 * Evidence is an Intel TDX v4 quote (real, or simulated in the same byte
 * layout) whose 64-byte REPORTDATA commits to the node's libp2p public key,
 * its X25519 job-encryption key and a freshness value (see binding.ts).
 */

/** Which kind of TEE produced a quote. */
export type EvidenceKind = 'tdx' | 'simulated'

export const EVIDENCE_KINDS: readonly EvidenceKind[] = ['tdx', 'simulated']

/** TD measurements as reported in a TDX quote: MRTD and RTMR0–3, 48 bytes each. */
export interface Measurements {
  mrtd: Uint8Array
  rtmr: [Uint8Array, Uint8Array, Uint8Array, Uint8Array]
}

/**
 * What makes a piece of evidence fresh: a verifier's challenge nonce
 * (16–64 bytes), or an epoch number (floor(unix seconds / EPOCH_SECONDS)) for
 * evidence that is passed around without a challenge.
 */
export type Freshness =
  | { kind: 'nonce', nonce: Uint8Array }
  | { kind: 'epoch', epoch: number }

/** Evidence as it travels between nodes. */
export interface Evidence {
  kind: EvidenceKind
  /** The quote, TDX v4 byte layout. */
  quote: Uint8Array
  /** The X25519 job-encryption public key (32 bytes) the quote commits to. */
  jobPublicKey: Uint8Array
  freshness: Freshness
}

/** Makes quotes over given REPORTDATA. */
export interface EvidenceProvider {
  readonly kind: EvidenceKind
  /** A quote whose REPORTDATA is `reportData` (exactly 64 bytes). */
  quote(reportData: Uint8Array): Promise<Uint8Array>
}

/** The outcome of checking a quote's own signature chain (not yet binding or policy). */
export interface QuoteVerification {
  kind: EvidenceKind
  measurements: Measurements
  /** REPORTDATA, 64 bytes. */
  reportData: Uint8Array
  /** TD attributes (8 bytes); bit 0 of byte 0 is DEBUG. */
  tdAttributes: Uint8Array
  debug: boolean
  /** DCAP TCB status ('UpToDate', 'SWHardeningNeeded', …), or 'Simulated'. */
  tcbStatus: string
  advisoryIds: string[]
}

/** Checks one kind of quote. Throws AttestationError. */
export interface QuoteVerifier {
  readonly kind: EvidenceKind
  verify(quote: Uint8Array, nowMs: number): Promise<QuoteVerification>
}

/**
 * Which evidence a network accepts. An empty allow-list accepts any value
 * for that measurement; a non-empty one requires a match (hex, lower case).
 * A measurement matches when every non-empty list matches.
 */
export interface AttestationPolicy {
  name: string
  acceptKinds: EvidenceKind[]
  allowedMrtd: string[]
  /** Allowed values per RTMR index 0–3. */
  allowedRtmr: [string[], string[], string[], string[]]
  /** Allowed image hashes (see imageHash()). */
  allowedImageHashes: string[]
  /** DCAP TCB statuses accepted for tdx evidence. */
  acceptedTcbStatuses: string[]
  allowDebug: boolean
  /** How many epochs either side of the current one epoch-fresh evidence may be. */
  epochTolerance: number
}

/** Evidence that passed signature, binding, freshness and policy checks. */
export interface VerifiedAttestation {
  kind: EvidenceKind
  measurements: Measurements
  /** sha256 over MRTD ‖ RTMR0–3, hex. */
  imageHash: string
  jobPublicKey: Uint8Array
  /** attestationDigest() of this evidence: what capacity announcements carry. */
  digest: Uint8Array
  tcbStatus: string
  advisoryIds: string[]
  verifiedAtMs: number
}

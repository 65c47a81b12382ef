/**
 * `/cocoon/attest/1.0.0`: a caller sends a fresh nonce and gets this node's
 * evidence bound to it (and, from a worker, its current capacity
 * announcement). An empty nonce asks for epoch-bound evidence, the kind that
 * can be passed on to third parties within the hour; a challenger that will
 * pass it on (a proxy, to its clients) asks for both in one request.
 *
 * Quote generation on real hardware is slow and shared, so at most
 * ATTEST_MAX_CONCURRENT run at once per node; further callers are told to
 * come back later rather than queued without bound.
 */
import {
  ATTEST_DEADLINE_MS, ATTEST_MAX_CONCURRENT, ATTEST_MAX_FRAME_BYTES, ATTEST_PROTOCOL
} from '../p2p/constants.js'
import { handleRequests, ProtocolError, request } from '../p2p/framing.js'
import { ErrorCode } from '../gen/framing.pb.js'
import { AttestRequest, AttestResponse, EvidenceKind as WireEvidenceKind } from '../gen/capacity.pb.js'
import { epochAt, NONCE_MAX_BYTES, NONCE_MIN_BYTES } from './binding.js'
import type { Evidence, EvidenceKind, Freshness } from './types.js'
import type { ProtocolHost } from '../p2p/framing.js'
import type { NodeMetrics } from '../p2p/metrics.js'
import type { Evidence as WireEvidence } from '../gen/capacity.pb.js'
import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

/** This node's evidence maker, as the service needs it. */
export interface EvidenceSource {
  evidence(freshness: Freshness): Promise<Evidence>
}

export interface AttestServiceInit {
  attestor: EvidenceSource
  /** The encoded capacity announcement to hand out with the evidence (workers). */
  capacity?: () => Uint8Array | undefined
  /** Called with the challenger's PeerId once its challenge was answered. */
  onChallenged?: (peer: string) => void
  now?: () => number
  log: Logger
  metrics?: NodeMetrics
}

export class AttestService {
  private readonly host: Pick<ProtocolHost, 'handle'> & { unhandle(protocol: string): Promise<void> }
  private readonly init: AttestServiceInit
  private inFlight = 0

  constructor (host: Pick<ProtocolHost, 'handle'> & { unhandle(protocol: string): Promise<void> }, init: AttestServiceInit) {
    this.host = host
    this.init = init
  }

  async start (): Promise<void> {
    await handleRequests(this.host, {
      protocol: ATTEST_PROTOCOL,
      maxFrameBytes: ATTEST_MAX_FRAME_BYTES,
      deadlineMs: ATTEST_DEADLINE_MS,
      request: AttestRequest,
      response: AttestResponse,
      maxInboundStreams: 4,
      log: this.init.log,
      onError: (code) => { this.init.metrics?.protocolErrors.inc({ protocol: ATTEST_PROTOCOL, code }) },
      handler: async (req, ctx) => {
        const answer = await this.answer(req)
        this.init.onChallenged?.(ctx.peer.toString())
        return answer
      }
    })
  }

  async stop (): Promise<void> {
    await this.host.unhandle(ATTEST_PROTOCOL)
  }

  private async answer (req: AttestRequest): Promise<AttestResponse> {
    const freshness = freshnessFor(req.nonce, (this.init.now ?? Date.now)())
    if (this.inFlight >= ATTEST_MAX_CONCURRENT) {
      throw new ProtocolError(ErrorCode.OVERLOADED, `${ATTEST_PROTOCOL}: ${this.inFlight} quotes in progress; retry shortly`, 500)
    }
    this.inFlight++
    try {
      const evidence = await this.init.attestor.evidence(freshness)
      const capacity = this.init.capacity?.()
      // epoch evidence is made once per epoch, so adding it costs a lookup
      const epoch = req.withEpochEvidence && freshness.kind === 'nonce'
        ? await this.init.attestor.evidence({ kind: 'epoch', epoch: epochAt((this.init.now ?? Date.now)()) })
        : undefined
      return {
        evidence: evidenceToWire(evidence),
        capacity: capacity == null ? new Uint8Array(0) : new Uint8Array(capacity),
        epochEvidence: epoch == null ? undefined : evidenceToWire(epoch)
      }
    } finally {
      this.inFlight--
    }
  }
}

function freshnessFor (nonce: Uint8Array, nowMs: number): Freshness {
  if (nonce.length === 0) return { kind: 'epoch', epoch: epochAt(nowMs) }
  if (nonce.length < NONCE_MIN_BYTES || nonce.length > NONCE_MAX_BYTES) {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `${ATTEST_PROTOCOL}: nonce must be ${NONCE_MIN_BYTES}-${NONCE_MAX_BYTES} bytes (got ${nonce.length})`)
  }
  return { kind: 'nonce', nonce }
}

const KIND_TO_WIRE: Record<EvidenceKind, WireEvidenceKind> = {
  tdx: WireEvidenceKind.TDX,
  simulated: WireEvidenceKind.SIMULATED
}

export function kindToWire (kind: EvidenceKind): WireEvidenceKind {
  return KIND_TO_WIRE[kind]
}

/** The evidence kind named on the wire, or undefined for one this version does not know. */
export function kindFromWire (kind: WireEvidenceKind): EvidenceKind | undefined {
  switch (kind) {
    case WireEvidenceKind.TDX: return 'tdx'
    case WireEvidenceKind.SIMULATED: return 'simulated'
    default: return undefined
  }
}

export function evidenceToWire (evidence: Evidence): WireEvidence {
  // protons wants plain ArrayBuffer-backed arrays
  const freshness = evidence.freshness.kind === 'nonce'
    ? { nonce: new Uint8Array(evidence.freshness.nonce) }
    : { epoch: BigInt(evidence.freshness.epoch) }
  return { kind: kindToWire(evidence.kind), quote: new Uint8Array(evidence.quote), jobPublicKey: new Uint8Array(evidence.jobPublicKey), ...freshness }
}

/** Reads wire evidence; throws ProtocolError(BAD_REQUEST) for an unknown kind or missing freshness. */
export function evidenceFromWire (wire: WireEvidence | undefined): Evidence {
  if (wire == null) throw new ProtocolError(ErrorCode.BAD_REQUEST, `${ATTEST_PROTOCOL}: answer carries no evidence`)
  const kind = kindFromWire(wire.kind)
  if (kind == null) throw new ProtocolError(ErrorCode.BAD_REQUEST, `${ATTEST_PROTOCOL}: unknown evidence kind ${String(wire.kind)}`)
  let freshness: Freshness
  if (wire.nonce != null) freshness = { kind: 'nonce', nonce: wire.nonce }
  else if (wire.epoch != null && wire.epoch <= BigInt(Number.MAX_SAFE_INTEGER)) freshness = { kind: 'epoch', epoch: Number(wire.epoch) }
  else throw new ProtocolError(ErrorCode.BAD_REQUEST, `${ATTEST_PROTOCOL}: evidence has no nonce or epoch`)
  return { kind, quote: wire.quote, jobPublicKey: wire.jobPublicKey, freshness }
}

export interface FetchedEvidence {
  evidence: Evidence
  /** The peer's encoded capacity announcement, when it sent one. */
  capacity?: Uint8Array
  /** The peer's epoch evidence, when asked for with `withEpochEvidence` and sent (unverified, as received). */
  epochEvidence?: Evidence
}

/**
 * Challenges `peer` with `nonce` (or asks for epoch evidence without one).
 * The answer is not yet trusted: the caller verifies it against the peer's
 * key and the nonce it sent.
 */
export async function fetchEvidence (
  host: Pick<ProtocolHost, 'dialProtocol'>,
  peer: PeerId | Multiaddr,
  nonce: Uint8Array<ArrayBuffer>,
  options: AbortOptions & { deadlineMs?: number, withEpochEvidence?: boolean } = {}
): Promise<FetchedEvidence> {
  const withEpochEvidence = options.withEpochEvidence === true && nonce.length > 0
  const response = await request(host, peer, ATTEST_PROTOCOL, { request: AttestRequest, response: AttestResponse }, { nonce, withEpochEvidence }, {
    ...options,
    maxFrameBytes: ATTEST_MAX_FRAME_BYTES,
    deadlineMs: options.deadlineMs ?? ATTEST_DEADLINE_MS
  })
  const epochEvidence = withEpochEvidence && response.epochEvidence != null ? evidenceFromWire(response.epochEvidence) : undefined
  if (epochEvidence != null && epochEvidence.freshness.kind !== 'epoch') {
    throw new ProtocolError(ErrorCode.BAD_REQUEST, `${ATTEST_PROTOCOL}: the epoch evidence is bound to a nonce`)
  }
  return {
    evidence: evidenceFromWire(response.evidence),
    capacity: response.capacity.length > 0 ? response.capacity : undefined,
    epochEvidence
  }
}

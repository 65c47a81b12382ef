/**
 * Epoch-bound evidence of each worker, fetched over /cocoon/attest with an
 * empty nonce and handed to clients with every job offer, so a client checks
 * the worker it seals to without ever connecting to it. Kept until the epoch
 * turns; a worker whose job key differs from the attested one is not offered.
 */
import { Evidence as EvidenceWire } from '../../gen/capacity.pb.js'
import { JOB_EVIDENCE_TIMEOUT_MS } from '../../p2p/constants.js'
import { epochAt } from '../../tee/binding.js'
import { evidenceToWire, fetchEvidence } from '../../tee/attest-service.js'
import type { ProtocolHost } from '../../p2p/framing.js'
import type { Evidence } from '../../tee/types.js'
import type { Logger, PeerId } from '@libp2p/interface'
import { equals } from 'uint8arrays/equals'

interface Cached { epoch: number, jobPublicKey: Uint8Array, encoded: Uint8Array<ArrayBuffer> }

export class WorkerEvidence {
  private readonly host: Pick<ProtocolHost, 'dialProtocol'>
  private readonly log: Logger
  private readonly now: () => number
  private readonly cache = new Map<string, Cached>()
  private readonly inFlight = new Map<string, Promise<Cached>>()

  constructor (host: Pick<ProtocolHost, 'dialProtocol'>, log: Logger, now: () => number = Date.now) {
    this.host = host
    this.log = log
    this.now = now
  }

  /**
   * The worker's encoded epoch evidence for `jobPublicKey`; throws when it
   * cannot be had within JOB_EVIDENCE_TIMEOUT_MS. Concurrent jobs for one
   * worker share one fetch, so no single job's cancel may end it.
   */
  async get (peer: PeerId, jobPublicKey: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const id = peer.toString()
    const hit = this.cache.get(id)
    if (hit != null && hit.epoch === epochAt(this.now()) && equals(hit.jobPublicKey, jobPublicKey)) return hit.encoded
    const fetched = await this.fetchOnce(peer)
    if (!equals(fetched.jobPublicKey, jobPublicKey)) {
      this.cache.delete(id)
      throw new Error(`worker ${id} presents a job key other than the attested one`)
    }
    return fetched.encoded
  }

  /**
   * Keeps epoch evidence the worker sent with its challenge answer, so no
   * second request is needed. Only this epoch's evidence is kept; like
   * fetched evidence it is checked by the clients it is handed to.
   */
  offer (peerId: string, evidence: Evidence): void {
    if (evidence.freshness.kind !== 'epoch' || evidence.freshness.epoch !== epochAt(this.now())) return
    this.cache.set(peerId, cachedOf(evidence, evidence.freshness.epoch))
  }

  /** Warms the cache for a worker that just joined (unless its challenge brought the evidence). */
  prefetch (peer: PeerId): void {
    if (this.cache.has(peer.toString())) return
    this.fetchOnce(peer).catch(err => { this.log('epoch evidence from %p failed - %s', peer, (err as Error).message) })
  }

  forget (peerId: string): void {
    this.cache.delete(peerId)
  }

  private async fetchOnce (peer: PeerId): Promise<Cached> {
    const id = peer.toString()
    let pending = this.inFlight.get(id)
    if (pending == null) {
      pending = this.fetch(peer).finally(() => { this.inFlight.delete(id) })
      this.inFlight.set(id, pending)
    }
    return pending
  }

  private async fetch (peer: PeerId): Promise<Cached> {
    const { evidence } = await fetchEvidence(this.host, peer, new Uint8Array(0), { deadlineMs: JOB_EVIDENCE_TIMEOUT_MS })
    if (evidence.freshness.kind !== 'epoch') throw new Error(`worker ${peer.toString()} answered an epoch request with nonce evidence`)
    const cached = cachedOf(evidence, evidence.freshness.epoch)
    this.cache.set(peer.toString(), cached)
    return cached
  }
}

/** What the cache keeps of epoch evidence: its epoch, the job key it binds, and the wire form handed to clients. */
function cachedOf (evidence: Evidence, epoch: number): Cached {
  return { epoch, jobPublicKey: evidence.jobPublicKey, encoded: EvidenceWire.encode(evidenceToWire(evidence)) }
}

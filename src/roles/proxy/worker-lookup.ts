/**
 * The proxy's fallback when no fresh worker in the registry serves a model:
 * ask the DHT who provides `model:<name>`, challenge each provider over
 * /cocoon/attest, and take the capacity announcement it returns through the
 * same checks as gossip. A worker that never reached us by gossip (another
 * partition, gossip turned off) is found this way.
 */
import { MODEL_LOOKUP_MAX_WORKERS, MODEL_LOOKUP_TIMEOUT_MS } from '../../p2p/constants.js'
import { modelKey } from '../../p2p/dht-keys.js'
import { TopicValidatorResult } from '../../p2p/gossip.js'
import { reject } from '../capacity/announcement.js'
import { attestationVerdict } from './capacity-validator.js'
import type { CapacityValidator } from './capacity-validator.js'
import type { PeerAttestations } from '../../tee/peer-attestations.js'
import type { WorkerEntry, WorkerOffer, WorkerRegistry } from './worker-registry.js'
import type { Verdict } from '../capacity/announcement.js'
import type { CocoonLibp2p } from '../../p2p/node.js'
import type { AbortOptions, Logger, PeerId } from '@libp2p/interface'

export interface LookupResult {
  /** Workers that can take the model now (registry order). */
  workers: Array<{ entry: WorkerEntry, offer: WorkerOffer }>
  /** Whether the DHT was asked (false: the registry already had fresh workers). */
  queriedDht: boolean
  /** Providers the DHT named and what happened to each. */
  providers: Array<{ peerId: string, verdict: string }>
}

export class WorkerLookup {
  private readonly node: CocoonLibp2p
  private readonly registry: WorkerRegistry
  private readonly attestations: PeerAttestations
  private readonly validator: CapacityValidator
  private readonly log: Logger
  private readonly inFlight = new Map<string, Promise<LookupResult>>()

  constructor (node: CocoonLibp2p, registry: WorkerRegistry, attestations: PeerAttestations, validator: CapacityValidator, log: Logger) {
    this.node = node
    this.registry = registry
    this.attestations = attestations
    this.validator = validator
    this.log = log
  }

  /** Fresh workers for `model`, from the registry or, failing that, the DHT. */
  async find (model: string, options: AbortOptions = {}): Promise<LookupResult> {
    const known = this.registry.workersFor(model)
    if (known.length > 0) return { workers: known, queriedDht: false, providers: [] }
    let pending = this.inFlight.get(model)
    if (pending == null) {
      pending = this.queryDht(model, options).finally(() => { this.inFlight.delete(model) })
      this.inFlight.set(model, pending)
    }
    return pending
  }

  private async queryDht (model: string, options: AbortOptions): Promise<LookupResult> {
    const key = await modelKey(model)
    const timeout = AbortSignal.timeout(MODEL_LOOKUP_TIMEOUT_MS)
    const signal = options.signal == null ? timeout : AbortSignal.any([options.signal, timeout])
    const providers = new Map<string, PeerId>()
    try {
      for await (const provider of this.node.contentRouting.findProviders(key, { signal })) {
        if (provider.id.equals(this.node.peerId) || providers.has(provider.id.toString())) continue
        if (provider.multiaddrs.length > 0) {
          await this.node.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs }).catch(() => {})
        }
        providers.set(provider.id.toString(), provider.id)
        if (providers.size >= MODEL_LOOKUP_MAX_WORKERS) break
      }
    } catch (err) {
      // a timeout still leaves whatever providers arrived before it
      this.log('findProviders %s ended - %s', model, (err as Error).message)
    }
    const outcomes = await Promise.all([...providers.values()].map(async peer => ({
      peerId: peer.toString(),
      verdict: describe(await this.admit(peer, model, signal))
    })))
    return { workers: this.registry.workersFor(model), queriedDht: true, providers: outcomes }
  }

  /** Attests one provider afresh and admits the capacity it returns. */
  private async admit (peer: PeerId, model: string, signal: AbortSignal): Promise<Verdict> {
    if (signal.aborted) return { result: TopicValidatorResult.Ignore, reason: 'timeout' }
    let capacity: Uint8Array | undefined
    try {
      capacity = (await this.attestations.attest(peer, undefined, { fresh: true })).capacity
    } catch (err) {
      this.log('attesting DHT provider %p for %s failed - %s', peer, model, (err as Error).message)
      const verdict = attestationVerdict(err)
      this.validator.count(verdict)
      return verdict
    }
    const verdict = capacity == null ? reject('no_capacity') : await this.validator.accept(peer, capacity, 'dht')
    this.validator.count(verdict)
    return verdict
  }
}

function describe (verdict: Verdict): string {
  return verdict.result === TopicValidatorResult.Accept ? 'accepted' : `${verdict.result}: ${verdict.reason}`
}

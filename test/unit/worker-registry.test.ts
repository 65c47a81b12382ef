import { expect } from 'chai'
import { CAPACITY_MAX_BASE_INTERVAL_MS, CAPACITY_MIN_TTL_MS, CAPACITY_TTL_INTERVALS } from '../../src/p2p/constants.js'
import { TopicValidatorResult } from '../../src/p2p/gossip.js'
import { AcceleratorKind, EvidenceKind } from '../../src/gen/capacity.pb.js'
import { checkFields } from '../../src/roles/capacity/announcement.js'
import { DEMOTION_BASE_MS, DEMOTION_MAX_MS, WorkerRegistry } from '../../src/roles/proxy/worker-registry.js'
import type { CapacityAnnouncement, ModelOffer } from '../../src/gen/capacity.pb.js'
import type { VerifiedAttestation } from '../../src/tee/types.js'

const NOW = 1_750_000_000_000

function offer (over: Partial<ModelOffer> = {}): ModelOffer {
  return { name: 'm', weightsHash: new Uint8Array(0), contextLength: 2048, pricePromptPerM: 10n, priceCompletionPerM: 20n, maxConcurrent: 4, freeSlots: 4, synthetic: false, description: '', ...over }
}

function announcement (over: Partial<CapacityAnnouncement> = {}): CapacityAnnouncement {
  return {
    peerId: new Uint8Array(0),
    network: 'local',
    models: [offer()],
    accelerators: [],
    attestationKind: EvidenceKind.SIMULATED,
    attestationDigest: new Uint8Array(32),
    timestampMs: BigInt(NOW),
    seq: 1n,
    intervalMs: 1_000,
    addrs: [],
    ...over
  }
}

const attestation: VerifiedAttestation = {
  kind: 'simulated',
  measurements: { mrtd: new Uint8Array(48), rtmr: [new Uint8Array(48), new Uint8Array(48), new Uint8Array(48), new Uint8Array(48)] },
  imageHash: 'ab',
  jobPublicKey: new Uint8Array(32),
  digest: new Uint8Array(32),
  tcbStatus: 'Simulated',
  advisoryIds: [],
  verifiedAtMs: NOW
}

describe('worker registry', () => {
  let now: number
  let registry: WorkerRegistry
  beforeEach(() => {
    now = NOW
    registry = new WorkerRegistry({ now: () => now, historyHalfLifeMs: 60_000 })
  })

  it('expires an entry after three of its own announcement intervals, but never before CAPACITY_MIN_TTL_MS (a stalled proxy must not drop everyone)', () => {
    for (const [i, [intervalMs, ttlMs]] of [[20_000, 60_000], [2_000, CAPACITY_MIN_TTL_MS]].entries()) {
      registry.update('w1', announcement({ seq: BigInt(i + 1), timestampMs: BigInt(now), intervalMs }), attestation, 'gossip')
      const seenAt = now
      now = seenAt + ttlMs
      registry.expire()
      expect(registry.get('w1'), `interval ${intervalMs} ms: still listed at its TTL`).to.not.equal(undefined)
      now += 1
      registry.expire()
      expect(registry.get('w1'), `interval ${intervalMs} ms: gone after its TTL`).to.equal(undefined)
    }
  })

  it('keeps refusing old sequence numbers after the entry expired', () => {
    registry.update('w1', announcement({ seq: 50n }), attestation, 'gossip')
    now += CAPACITY_MIN_TTL_MS + 1
    registry.expire()
    expect(registry.get('w1')).to.equal(undefined)
    expect(registry.lastSeq('w1')).to.equal(50n)
  })

  it('removes a worker that withdraws (no models), and marks one down until it announces again', () => {
    registry.update('w1', announcement({ seq: 1n }), attestation, 'gossip')
    registry.markDown('w1')
    expect(registry.workersFor('m')).to.deep.equal([])
    registry.update('w1', announcement({ seq: 2n }), attestation, 'gossip')
    expect(registry.workersFor('m').map(w => w.entry.peerId)).to.deep.equal(['w1'])
    registry.update('w1', announcement({ seq: 3n, models: [] }), attestation, 'gossip')
    expect(registry.get('w1')).to.equal(undefined)
  })

  it('orders workers by completion price, then success rate, and skips those without a free slot', () => {
    registry.update('cheap', announcement({ models: [offer({ priceCompletionPerM: 5n })] }), attestation, 'gossip')
    registry.update('dear', announcement({ models: [offer({ priceCompletionPerM: 50n })] }), attestation, 'gossip')
    registry.update('full', announcement({ models: [offer({ priceCompletionPerM: 1n, freeSlots: 0 })] }), attestation, 'gossip')
    registry.update('flaky', announcement({ models: [offer({ priceCompletionPerM: 50n })] }), attestation, 'gossip')
    registry.recordResult('flaky', { ok: false })
    // a failure sits it out while others can take the job
    expect(registry.workersFor('m').map(w => w.entry.peerId)).to.deep.equal(['cheap', 'dear'])
    now += DEMOTION_BASE_MS + 1
    expect(registry.workersFor('m').map(w => w.entry.peerId)).to.deep.equal(['cheap', 'dear', 'flaky'])
    expect(registry.workersFor('other')).to.deep.equal([])
    const [summary] = registry.models()
    expect(summary).to.deep.equal({
      model: 'm',
      workers: 4,
      freeSlots: 12,
      contextLength: 2048,
      minPromptPerM: 10n,
      maxPromptPerM: 10n,
      minCompletionPerM: 1n,
      maxCompletionPerM: 50n,
      synthetic: false,
      description: ''
    })
  })

  it('demotes a worker that fails for a time that doubles with each failure in a row, and clears it on success', () => {
    let seq = 0n
    // both keep announcing, so only the demotion decides who is listed
    const refresh = (): void => {
      seq++
      registry.update('w', announcement({ seq, timestampMs: BigInt(now) }), attestation, 'gossip')
      registry.update('other', announcement({ seq, timestampMs: BigInt(now), models: [offer({ priceCompletionPerM: 99n })] }), attestation, 'gossip')
    }
    const listed = (): string[] => { refresh(); return registry.offersFor('m').map(w => w.entry.peerId).sort() }
    for (let failures = 1; failures <= 4; failures++) {
      registry.recordResult('w', { ok: false })
      const sitsOut = DEMOTION_BASE_MS * 2 ** (failures - 1)
      expect(registry.demotedUntil('w') - now, `after ${failures} failures`).to.equal(sitsOut)
      expect(listed()).to.deep.equal(['other'])
      now += sitsOut + 1
      expect(listed()).to.deep.equal(['other', 'w'])
    }
    registry.recordResult('w', { ok: false })
    // the only worker for a model is routed to even while demoted: a slow answer beats none
    registry.recordResult('other', { ok: false })
    expect(listed()).to.deep.equal(['other', 'w'])
    registry.recordResult('w', { ok: true })
    expect(registry.demotedUntil('w')).to.equal(0)
    expect(listed()).to.deep.equal(['w'])
    // never longer than the max
    for (let i = 0; i < 30; i++) registry.recordResult('other', { ok: false })
    expect(registry.demotedUntil('other') - now).to.equal(DEMOTION_MAX_MS)
  })

  it('lists a worker that claims a long heartbeat for no longer than its swarm justifies', () => {
    registry.update('w1', announcement({ intervalMs: 600_000 }), attestation, 'gossip')
    const capped = registry.intervalCap()
    expect(capped).to.equal(CAPACITY_MAX_BASE_INTERVAL_MS)
    now += CAPACITY_TTL_INTERVALS * capped + 1
    registry.expire()
    expect(registry.get('w1'), 'gone after three of the intervals a 1-worker swarm justifies, not 30 minutes').to.equal(undefined)
  })

  it('decays success history: old failures fade, recent ones count', () => {
    registry.update('w1', announcement(), attestation, 'gossip')
    expect(registry.get('w1')?.successRate).to.equal(1)
    for (let i = 0; i < 9; i++) registry.recordResult('w1', { ok: false, latencyMs: 100 })
    const low = registry.get('w1')?.successRate ?? 1
    expect(low).to.be.closeTo(0.1, 0.01)
    now += 10 * 60_000 // ten half-lives
    for (let i = 0; i < 3; i++) registry.recordResult('w1', { ok: true, latencyMs: 200 })
    expect(registry.get('w1')?.successRate).to.be.greaterThan(0.95)
    expect(registry.get('w1')?.jobs).to.deep.equal({ ok: 3, failed: 9 })
    const latency = registry.get('w1')?.latencyMs ?? 0
    expect(latency).to.be.greaterThan(100).and.lessThan(200)
  })
})

describe('capacity announcement checks', () => {
  const verdict = (a: CapacityAnnouncement): string => {
    const v = checkFields(a, 'local', NOW)
    return v.result === TopicValidatorResult.Accept ? 'accept' : `${v.result}:${v.reason}`
  }

  it('accepts a well-formed announcement', () => {
    expect(verdict(announcement())).to.equal('accept')
  })

  it('ignores what an honest but late or elsewhere worker sends', () => {
    expect(verdict(announcement({ network: 'public' }))).to.equal('ignore:other_network')
    expect(verdict(announcement({ timestampMs: BigInt(NOW - 31_000) }))).to.equal('ignore:stale')
    expect(verdict(announcement({ timestampMs: BigInt(NOW + 31_000) }))).to.equal('ignore:future')
  })

  it('rejects what no honest worker signs', () => {
    expect(verdict(announcement({ attestationDigest: new Uint8Array(31) }))).to.equal('reject:bad_digest')
    expect(verdict(announcement({ intervalMs: 10 }))).to.equal('reject:bad_interval')
    expect(verdict(announcement({ models: [offer({ name: 'bad name' })] }))).to.equal('reject:bad_model_name')
    expect(verdict(announcement({ models: [offer({ weightsHash: new Uint8Array(7) })] }))).to.equal('reject:bad_weights_hash')
    expect(verdict(announcement({ models: [offer({ contextLength: 0 })] }))).to.equal('reject:bad_context_length')
    expect(verdict(announcement({ models: [offer({ priceCompletionPerM: 10n ** 16n })] }))).to.equal('reject:bad_price')
    // nobody works for free: under the network's floor (1 nanoTON on a local network, 0.001 TON per 1M tokens on the public one)
    expect(verdict(announcement({ models: [offer({ priceCompletionPerM: 0n })] }))).to.equal('reject:price_below_floor')
    expect(checkFields(announcement({ network: 'public', models: [offer({ priceCompletionPerM: 999_999n })] }), 'public', NOW)).to.deep.equal({ result: TopicValidatorResult.Reject, reason: 'price_below_floor' })
    expect(verdict(announcement({ models: [offer({ freeSlots: 5, maxConcurrent: 4 })] }))).to.equal('reject:bad_slots')
    expect(verdict(announcement({ models: [offer(), offer()] }))).to.equal('reject:duplicate_model')
    expect(verdict(announcement({ models: Array.from({ length: 17 }, (_, i) => offer({ name: `m${i}` })) }))).to.equal('reject:too_many_models')
    expect(verdict(announcement({
      accelerators: [{ kind: AcceleratorKind.GPU, name: 'gpu', memoryTotalMib: 10, memoryUsedMib: 11, utilizationPct: 0, driver: '', computeCapability: '' }]
    }))).to.equal('reject:bad_accelerator')
  })
})

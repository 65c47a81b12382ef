import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair, publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { Evidence as EvidenceWire } from '../../src/gen/capacity.pb.js'
import { WorkerEvidence } from '../../src/roles/proxy/worker-evidence.js'
import { AttestService, evidenceFromWire, fetchEvidence } from '../../src/tee/attest-service.js'
import { AttestationError, ConfigError } from '../../src/errors.js'
import { packageRoot } from '../../src/package-info.js'
import { Attestor, EvidenceVerifier } from '../../src/tee/attestor.js'
import { attestationDigest, EPOCH_SECONDS, epochAt, imageHash, reportDataFor } from '../../src/tee/binding.js'
import { DcapVerifier } from '../../src/tee/dcap.js'
import { checkPolicy, policyFor } from '../../src/tee/policy.js'
import { parseTdxQuote } from '../../src/tee/quote.js'
import {
  buildDigest, SIMULATED_VENDOR_ID, SimulatedProvider, SimulatedVerifier, simulatedMeasurements
} from '../../src/tee/simulated.js'
import type { Collateral } from '../../src/tee/dcap.js'
import type { AttestationPolicy, Evidence, EvidenceProvider, QuoteVerification, QuoteVerifier } from '../../src/tee/types.js'
import { plainLoopbackNode, reasonOf, reasonOfSync } from '../helpers.js'
import type { Ed25519PublicKey, Libp2p } from '@libp2p/interface'

const FIXTURES = join(packageRoot(), 'test/fixtures/tdx')
const NOW = Date.parse('2025-07-01T00:00:00Z')

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const nonce = (): Uint8Array => new Uint8Array(randomBytes(32))

async function libp2pKey (): Promise<Uint8Array> {
  return publicKeyToProtobuf((await generateKeyPair('Ed25519')).publicKey)
}

const MEASUREMENTS = simulatedMeasurements({ buildDigest: buildDigest(), configDigest: new TextEncoder().encode('test config') })

interface Node { attestor: Attestor, libp2pPublicKey: Uint8Array, jobPublicKey: Uint8Array }

async function simulatedNode (provider: EvidenceProvider = new SimulatedProvider(MEASUREMENTS)): Promise<Node> {
  const libp2pPublicKey = await libp2pKey()
  const jobPublicKey = new Uint8Array(randomBytes(32))
  return { attestor: new Attestor({ provider, libp2pPublicKey, jobPublicKey }), libp2pPublicKey, jobPublicKey }
}

function verifierFor (policy: AttestationPolicy, ...verifiers: QuoteVerifier[]): EvidenceVerifier {
  return new EvidenceVerifier({ policy, verifiers: verifiers.length > 0 ? verifiers : [new SimulatedVerifier()], now: () => NOW })
}

/** Reports simulated quotes as tdx ones with the given overrides: lets policy checks for tdx run without hardware. */
function tdxLike (overrides: Partial<QuoteVerification>): QuoteVerifier {
  const inner = new SimulatedVerifier()
  return { kind: 'tdx', verify: async (quote) => ({ ...(await inner.verify(quote)), kind: 'tdx', tcbStatus: 'UpToDate', ...overrides }) }
}

describe('attestation binding', () => {
  it('validates the job key, nonce and epoch', async () => {
    const libp2pPublicKey = await libp2pKey()
    const jobPublicKey = new Uint8Array(32)
    expect(reportDataFor({ libp2pPublicKey, jobPublicKey, freshness: { kind: 'nonce', nonce: new Uint8Array(16) } })).to.have.length(64)
    expect(reasonOfSync(() => reportDataFor({ libp2pPublicKey, jobPublicKey: new Uint8Array(31), freshness: { kind: 'epoch', epoch: 1 } }))).to.equal('malformed')
    expect(reasonOfSync(() => reportDataFor({ libp2pPublicKey, jobPublicKey, freshness: { kind: 'nonce', nonce: new Uint8Array(15) } }))).to.equal('malformed')
    expect(reasonOfSync(() => reportDataFor({ libp2pPublicKey, jobPublicKey, freshness: { kind: 'nonce', nonce: new Uint8Array(65) } }))).to.equal('malformed')
    expect(reasonOfSync(() => reportDataFor({ libp2pPublicKey, jobPublicKey, freshness: { kind: 'epoch', epoch: -1 } }))).to.equal('malformed')
    expect(reasonOfSync(() => reportDataFor({ libp2pPublicKey, jobPublicKey, freshness: { kind: 'epoch', epoch: 1.5 } }))).to.equal('malformed')
  })

  it('commits to every input', async () => {
    const base = { libp2pPublicKey: await libp2pKey(), jobPublicKey: new Uint8Array(32), freshness: { kind: 'epoch', epoch: 7 } as const }
    const reference = hex(reportDataFor(base))
    expect(hex(reportDataFor({ ...base, libp2pPublicKey: await libp2pKey() }))).to.not.equal(reference)
    expect(hex(reportDataFor({ ...base, jobPublicKey: new Uint8Array(32).fill(1) }))).to.not.equal(reference)
    expect(hex(reportDataFor({ ...base, freshness: { kind: 'epoch', epoch: 8 } }))).to.not.equal(reference)
    expect(hex(reportDataFor(base))).to.equal(reference)
  })

  it('numbers epochs in hours of unix time', () => {
    expect(EPOCH_SECONDS).to.equal(3600)
    expect(epochAt(0)).to.equal(0)
    expect(epochAt(3600_000 - 1)).to.equal(0)
    expect(epochAt(3600_000)).to.equal(1)
  })
})

describe('simulated TEE', () => {
  it('makes TDX v4 quotes marked as simulated, over the given REPORTDATA', async () => {
    const reportData = new Uint8Array(64).fill(5)
    const quote = parseTdxQuote(await new SimulatedProvider(MEASUREMENTS).quote(reportData))
    expect(hex(quote.qeVendorId)).to.equal(hex(SIMULATED_VENDOR_ID))
    expect(Buffer.from(quote.qeVendorId).toString('ascii')).to.equal('COCOON-SIMULATED')
    expect(hex(quote.reportData)).to.equal(hex(reportData))
    expect(hex(quote.measurements.mrtd)).to.equal(hex(MEASUREMENTS.mrtd))
    expect(hex(quote.tdAttributes)).to.equal('0000000000000000')
    expect(Buffer.from(quote.signatureData.subarray(96)).toString('ascii')).to.equal('cocoon simulated TDX quote: not hardware evidence')
    expect(await reasonOf(new SimulatedProvider(MEASUREMENTS).quote(new Uint8Array(32)))).to.equal('malformed')
  })

  it('derives measurements from the build and the config', () => {
    expect(hex(buildDigest())).to.equal(hex(buildDigest())).and.to.have.length(64)
    const other = simulatedMeasurements({ buildDigest: buildDigest(), configDigest: new TextEncoder().encode('other config') })
    expect(hex(other.mrtd)).to.equal(hex(MEASUREMENTS.mrtd))
    expect(hex(other.rtmr[0])).to.equal(hex(MEASUREMENTS.rtmr[0]))
    expect(hex(other.rtmr[3])).to.not.equal(hex(MEASUREMENTS.rtmr[3]))
    expect(hex(MEASUREMENTS.rtmr[1])).to.equal('00'.repeat(48))
    const otherBuild = simulatedMeasurements({ buildDigest: new Uint8Array(32), configDigest: new TextEncoder().encode('test config') })
    expect(hex(otherBuild.mrtd)).to.not.equal(hex(MEASUREMENTS.mrtd))
  })

  it('refuses a quote whose signature does not verify, or is not simulated', async () => {
    const quote = await new SimulatedProvider(MEASUREMENTS).quote(new Uint8Array(64))
    const tampered = quote.slice()
    tampered[200] ^= 1 // inside MRTD
    expect(await reasonOf(new SimulatedVerifier().verify(tampered))).to.equal('signature')
    const otherKey = quote.slice()
    otherKey[636 + 64] ^= 1 // the embedded public key
    expect(await reasonOf(new SimulatedVerifier().verify(otherKey))).to.equal('signature')
    const real = new Uint8Array(readFileSync(join(FIXTURES, 'tdx_quote')))
    expect(await reasonOf(new SimulatedVerifier().verify(real))).to.equal('malformed')
  })
})

describe('Attestor and EvidenceVerifier', () => {
  it('round-trips simulated evidence bound to a nonce', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: n })
    expect(evidence.kind).to.equal('simulated')
    const v = await verifierFor(policyFor('local')).verify(evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } })
    expect(v.kind).to.equal('simulated')
    expect(v.tcbStatus).to.equal('Simulated')
    expect(hex(v.jobPublicKey)).to.equal(hex(node.jobPublicKey))
    expect(v.imageHash).to.equal(imageHash(MEASUREMENTS))
    expect(hex(v.digest)).to.equal(hex(await node.attestor.digest()))
    expect(v.verifiedAtMs).to.equal(NOW)
    expect(v.durationMs).to.be.a('number').and.to.be.at.least(0)
  })

  it('round-trips epoch evidence within the tolerance, and refuses an old epoch', async () => {
    const node = await simulatedNode()
    const verifier = verifierFor(policyFor('local'))
    const expected = { libp2pPublicKey: node.libp2pPublicKey, freshness: 'epoch' as const }
    const current = epochAt(NOW)
    await verifier.verify(await node.attestor.evidence({ kind: 'epoch', epoch: current }), expected)
    await verifier.verify(await node.attestor.evidence({ kind: 'epoch', epoch: current - 1 }), expected)
    expect(await reasonOf(verifier.verify(await node.attestor.evidence({ kind: 'epoch', epoch: current - 2 }), expected))).to.equal('freshness')
    expect(await reasonOf(verifier.verify(await node.attestor.evidence({ kind: 'nonce', nonce: nonce() }), expected))).to.equal('freshness')
  })

  it('makes epoch evidence once per epoch', async () => {
    let quotes = 0
    const inner = new SimulatedProvider(MEASUREMENTS)
    const counting: EvidenceProvider = { kind: 'simulated', quote: async (rd) => { quotes++; return inner.quote(rd) } }
    const node = await simulatedNode(counting)
    const [a, b] = await Promise.all([node.attestor.evidence({ kind: 'epoch', epoch: 10 }), node.attestor.evidence({ kind: 'epoch', epoch: 10 })])
    expect(hex(a.quote)).to.equal(hex(b.quote))
    expect(quotes).to.equal(1)
    await node.attestor.evidence({ kind: 'epoch', epoch: 11 })
    await node.attestor.evidence({ kind: 'nonce', nonce: nonce() })
    await node.attestor.evidence({ kind: 'nonce', nonce: nonce() })
    expect(quotes).to.equal(4)
  })

  it('refuses a tampered simulated quote', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: n })
    const quote = evidence.quote.slice()
    quote[400] ^= 0x80 // inside RTMR0
    expect(await reasonOf(verifierFor(policyFor('local')).verify({ ...evidence, quote }, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } })))
      .to.equal('signature')
  })

  it('refuses evidence presented by another libp2p key, or with another job key', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: n })
    const verifier = verifierFor(policyFor('local'))
    expect(await reasonOf(verifier.verify(evidence, { libp2pPublicKey: await libp2pKey(), freshness: { kind: 'nonce', nonce: n } }))).to.equal('binding')
    const otherJobKey: Evidence = { ...evidence, jobPublicKey: new Uint8Array(randomBytes(32)) }
    expect(await reasonOf(verifier.verify(otherJobKey, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } }))).to.equal('binding')
    const otherNonce: Evidence = { ...evidence, freshness: { kind: 'nonce', nonce: nonce() } }
    expect(await reasonOf(verifier.verify(otherNonce, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } }))).to.equal('binding')
  })

  it('refuses evidence bound to another nonce', async () => {
    const node = await simulatedNode()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: nonce() })
    expect(await reasonOf(verifierFor(policyFor('local')).verify(evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: nonce() } })))
      .to.equal('freshness')
  })

  it('refuses simulated evidence on the public network before looking at the quote', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: n })
    let looked = false
    const spy: QuoteVerifier = { kind: 'simulated', verify: async (q) => { looked = true; return new SimulatedVerifier().verify(q) } }
    const err = await verifierFor(policyFor('public'), spy).verify(evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } }).catch((e: unknown) => e)
    expect((err as AttestationError).reason).to.equal('policy')
    expect((err as Error).message).to.include('simulated evidence is not accepted on the public network')
    expect(looked).to.equal(false)
  })

  it('applies an MRTD allow-list', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence = await node.attestor.evidence({ kind: 'nonce', nonce: n })
    const expected = { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } as const }
    const hit = verifierFor(policyFor('local', { allowedMrtd: ['00'.repeat(48), hex(MEASUREMENTS.mrtd).toUpperCase()] }))
    expect((await hit.verify(evidence, expected)).kind).to.equal('simulated')
    const miss = verifierFor(policyFor('local', { allowedMrtd: ['00'.repeat(48)] }))
    const err = await miss.verify(evidence, expected).catch((e: unknown) => e)
    expect((err as AttestationError).reason).to.equal('policy')
    expect((err as Error).message).to.include(`MRTD ${hex(MEASUREMENTS.mrtd)} is not in the allow-list`)
    const images = verifierFor(policyFor('local', { allowedImageHashes: ['ab'.repeat(32)] }))
    expect(await reasonOf(images.verify(evidence, expected))).to.equal('policy')
  })

  it('refuses a debug TD and an outdated TCB on the public network', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence: Evidence = { ...(await node.attestor.evidence({ kind: 'nonce', nonce: n })), kind: 'tdx' }
    const expected = { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } as const }
    const debugTd = Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0)
    const err = await verifierFor(policyFor('public'), tdxLike({ debug: true, tdAttributes: debugTd })).verify(evidence, expected).catch((e: unknown) => e)
    expect((err as AttestationError).reason).to.equal('policy')
    expect((err as Error).message).to.include('debug TD')
    expect((await verifierFor(policyFor('local'), tdxLike({ debug: true, tdAttributes: debugTd })).verify(evidence, expected)).kind).to.equal('tdx')
    expect(await reasonOf(verifierFor(policyFor('public'), tdxLike({ tcbStatus: 'OutOfDate' })).verify(evidence, expected))).to.equal('tcb')
    expect((await verifierFor(policyFor('public'), tdxLike({})).verify(evidence, expected)).tcbStatus).to.equal('UpToDate')
  })

  it('refuses evidence whose kind differs from its quote', async () => {
    const node = await simulatedNode()
    const n = nonce()
    const evidence: Evidence = { ...(await node.attestor.evidence({ kind: 'nonce', nonce: n })), kind: 'tdx' }
    const lying: QuoteVerifier = { kind: 'tdx', verify: async (q) => new SimulatedVerifier().verify(q) }
    expect(await reasonOf(verifierFor(policyFor('local'), lying).verify(evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } })))
      .to.equal('malformed')
  })

  it('refuses the real tdx_quote as not bound to this peer', async () => {
    const quote = new Uint8Array(readFileSync(join(FIXTURES, 'tdx_quote')))
    const collateral = JSON.parse(readFileSync(join(FIXTURES, 'tdx_quote_collateral.json'), 'utf8')) as Collateral
    const verifier = verifierFor(policyFor('local'), new DcapVerifier({ collateral: async () => collateral }))
    const n = nonce()
    const evidence: Evidence = { kind: 'tdx', quote, jobPublicKey: new Uint8Array(32), freshness: { kind: 'nonce', nonce: n } }
    expect(await reasonOf(verifier.verify(evidence, { libp2pPublicKey: await libp2pKey(), freshness: { kind: 'nonce', nonce: n } }))).to.equal('binding')
  })

  it('gives the same digest for evidence under different nonces', async () => {
    const node = await simulatedNode()
    const verifier = verifierFor(policyFor('local'))
    const digests: string[] = []
    for (const n of [nonce(), nonce()]) {
      const v = await verifier.verify(await node.attestor.evidence({ kind: 'nonce', nonce: n }), { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } })
      digests.push(hex(v.digest))
    }
    expect(digests[0]).to.equal(digests[1])
    expect(digests[0]).to.equal(hex(attestationDigest({ kind: 'simulated', measurements: MEASUREMENTS, jobPublicKey: node.jobPublicKey, libp2pPublicKey: node.libp2pPublicKey })))
    const other = await simulatedNode()
    expect(hex(await other.attestor.digest())).to.not.equal(digests[0])
  })

  it('reads its measurements from a quote when not given them', async () => {
    const node = await simulatedNode()
    expect(hex((await node.attestor.measurements()).mrtd)).to.equal(hex(MEASUREMENTS.mrtd))
    const given = new Attestor({ provider: new SimulatedProvider(MEASUREMENTS), libp2pPublicKey: node.libp2pPublicKey, jobPublicKey: node.jobPublicKey, measurements: MEASUREMENTS })
    expect(hex(await given.digest())).to.equal(hex(await node.attestor.digest()))
  })
})

describe('attestation policy', () => {
  const verification = (over: Partial<QuoteVerification>): QuoteVerification => ({
    kind: 'tdx', measurements: MEASUREMENTS, reportData: new Uint8Array(64), tdAttributes: new Uint8Array(8), debug: false, tcbStatus: 'UpToDate', advisoryIds: [], ...over
  })

  it('has the documented defaults', () => {
    const local = policyFor('local')
    expect(local.acceptKinds).to.have.members(['simulated', 'tdx'])
    expect(local.allowDebug).to.equal(true)
    expect(local.acceptedTcbStatuses).to.include('OutOfDate')
    const pub = policyFor('public')
    expect(pub.acceptKinds).to.deep.equal(['tdx'])
    expect(pub.acceptedTcbStatuses).to.have.members(['UpToDate', 'SWHardeningNeeded'])
    expect(pub.allowDebug).to.equal(false)
    expect(pub.epochTolerance).to.equal(1)
  })

  it('names the refused TCB status and the refused RTMR', () => {
    const err = (() => { try { checkPolicy(policyFor('public'), verification({ tcbStatus: 'ConfigurationNeeded', advisoryIds: ['INTEL-SA-00001'] })) } catch (e) { return e } })()
    expect((err as AttestationError).reason).to.equal('tcb')
    expect((err as Error).message).to.include('ConfigurationNeeded').and.to.include('INTEL-SA-00001')
    const rtmr = (() => { try { checkPolicy(policyFor('public', { allowedRtmr: [[], [], [], ['11'.repeat(48)]] }), verification({})) } catch (e) { return e } })()
    expect((rtmr as AttestationError).reason).to.equal('policy')
    expect((rtmr as Error).message).to.include('RTMR3')
    expect(() => { checkPolicy(policyFor('public'), verification({ tcbStatus: 'SWHardeningNeeded' })) }).to.not.throw()
  })

  it('refuses allow-list entries that could never match', () => {
    expect(() => policyFor('public', { allowedMrtd: ['abc'] })).to.throw(ConfigError, /allowedMrtd\[0\]/)
    expect(() => policyFor('public', { allowedImageHashes: ['00'.repeat(48)] })).to.throw(ConfigError)
  })
})

describe('one challenge with the epoch evidence', () => {
  let a: Libp2p
  let b: Libp2p
  let node: Node

  before(async () => {
    a = await createLibp2p(plainLoopbackNode())
    b = await createLibp2p(plainLoopbackNode())
    // b's evidence binds b's own libp2p key, as a worker's does
    const libp2pPublicKey = publicKeyToProtobuf(b.peerId.publicKey as Ed25519PublicKey)
    const jobPublicKey = new Uint8Array(randomBytes(32))
    node = { attestor: new Attestor({ provider: new SimulatedProvider(MEASUREMENTS), libp2pPublicKey, jobPublicKey }), libp2pPublicKey, jobPublicKey }
    await new AttestService(b, { attestor: node.attestor, now: () => NOW, log: defaultLogger().forComponent('test:attest') }).start()
    await a.peerStore.merge(b.peerId, { multiaddrs: b.getMultiaddrs() })
  })

  after(async () => {
    await a?.stop()
    await b?.stop()
  })

  it('answers a nonce challenge with the epoch evidence when asked, and both verify', async () => {
    const n = nonce()
    const fetched = await fetchEvidence(a, b.peerId, new Uint8Array(n), { withEpochEvidence: true })
    const verifier = verifierFor(policyFor('local'))
    await verifier.verify(fetched.evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: { kind: 'nonce', nonce: n } })
    expect(fetched.epochEvidence?.freshness).to.deep.equal({ kind: 'epoch', epoch: epochAt(NOW) })
    const epoch = await verifier.verify(fetched.epochEvidence as Evidence, { libp2pPublicKey: node.libp2pPublicKey, freshness: 'epoch' })
    expect(hex(epoch.jobPublicKey)).to.equal(hex(node.jobPublicKey))

    const plain = await fetchEvidence(a, b.peerId, new Uint8Array(nonce()))
    expect(plain.epochEvidence, 'not asked for').to.equal(undefined)
  })

  it('lets a proxy hand the epoch evidence to clients without a second request', async () => {
    const fetched = await fetchEvidence(a, b.peerId, new Uint8Array(nonce()), { withEpochEvidence: true })
    const noDial = { dialProtocol: async () => { throw new Error('dialled') } }
    const cache = new WorkerEvidence(noDial, defaultLogger().forComponent('test:evidence'), () => NOW)
    cache.offer(b.peerId.toString(), fetched.epochEvidence as Evidence)
    const encoded = await cache.get(b.peerId, node.jobPublicKey)
    const handedOn = evidenceFromWire(EvidenceWire.decode(encoded))
    await verifierFor(policyFor('local')).verify(handedOn, { libp2pPublicKey: node.libp2pPublicKey, freshness: 'epoch' })
    // evidence of another epoch is not kept
    const stale = new WorkerEvidence(noDial, defaultLogger().forComponent('test:evidence'), () => NOW + 2 * EPOCH_SECONDS * 1000)
    stale.offer(b.peerId.toString(), fetched.epochEvidence as Evidence)
    expect(await reasonOfMessage(stale.get(b.peerId, node.jobPublicKey))).to.equal('dialled')
  })
})

async function reasonOfMessage (promise: Promise<unknown>): Promise<string> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  if (!(err instanceof Error)) throw new Error('expected a rejection')
  return err.message
}

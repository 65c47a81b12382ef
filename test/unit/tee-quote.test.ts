import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { expect } from 'chai'
import { AttestationError } from '../../src/errors.js'
import { packageRoot } from '../../src/package-info.js'
import { classify, DcapVerifier } from '../../src/tee/dcap.js'
import {
  encodeTdxQuote, OFFSETS, parseTdxQuote, SIGNATURE_DATA_OFFSET, SIGNATURE_LENGTH_OFFSET, SIGNED_LENGTH, TEE_TYPE_TDX
} from '../../src/tee/quote.js'
import type { Collateral } from '../../src/tee/dcap.js'
import type { Measurements } from '../../src/tee/types.js'
import { reasonOf, reasonOfSync } from '../helpers.js'

const FIXTURES = join(packageRoot(), 'test/fixtures/tdx')
const TDX_QUOTE = new Uint8Array(readFileSync(join(FIXTURES, 'tdx_quote')))
const COCOON_QUOTE = new Uint8Array(readFileSync(join(FIXTURES, 'cocoon_quote.dat')))
const COLLATERAL = JSON.parse(readFileSync(join(FIXTURES, 'tdx_quote_collateral.json'), 'utf8')) as Collateral
const INTEL_QE_VENDOR_ID = '939a7233f79c4ca9940a0db3957f0607'

const AT_2025_07_01 = Date.parse('2025-07-01T00:00:00Z')
const HOUR = 3600_000

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}

function fixtureSource (): { source: (quote: Uint8Array) => Promise<Collateral>, calls: () => number } {
  let calls = 0
  return { source: async () => { calls++; return COLLATERAL }, calls: () => calls }
}

describe('TDX quote layout', () => {
  for (const [name, quote] of [['tdx_quote', TDX_QUOTE], ['cocoon_quote.dat', COCOON_QUOTE]] as const) {
    it(`parses the real ${name} with fields at the documented offsets`, () => {
      const q = parseTdxQuote(quote)
      expect(q.version).to.equal(4)
      expect(q.attestationKeyType).to.equal(2)
      expect(q.teeType).to.equal(TEE_TYPE_TDX)
      expect(hex(q.qeVendorId)).to.equal(INTEL_QE_VENDOR_ID)
      expect(hex(q.measurements.mrtd)).to.equal(hex(quote.subarray(184, 232)))
      expect(OFFSETS.rtmr).to.deep.equal([376, 424, 472, 520])
      q.measurements.rtmr.forEach((r, i) => { expect(hex(r)).to.equal(hex(quote.subarray(376 + 48 * i, 424 + 48 * i))) })
      expect(hex(q.reportData)).to.equal(hex(quote.subarray(568, 632)))
      expect(hex(q.tdAttributes)).to.equal(hex(quote.subarray(168, 176)))
      expect(q.signedRegion.length).to.equal(632)
      expect(hex(q.signedRegion)).to.equal(hex(quote.subarray(0, 632)))
      const sigLen = Buffer.from(quote).readUInt32LE(632)
      expect(q.signatureData.length).to.equal(sigLen)
      expect(hex(q.signatureData)).to.equal(hex(quote.subarray(636, 636 + sigLen)))
    })
  }

  it('refuses short, wrong-version, non-TDX and inconsistent quotes as malformed', () => {
    expect(reasonOfSync(() => parseTdxQuote(TDX_QUOTE.subarray(0, 600)))).to.equal('malformed')
    expect(reasonOfSync(() => parseTdxQuote(TDX_QUOTE.subarray(0, 1000)))).to.equal('malformed') // length field says 4300
    const v3 = TDX_QUOTE.slice(); v3[0] = 3
    expect(reasonOfSync(() => parseTdxQuote(v3))).to.equal('malformed')
    const sgx = TDX_QUOTE.slice(); sgx[4] = 0
    expect(reasonOfSync(() => parseTdxQuote(sgx))).to.equal('malformed')
    const trailing = TDX_QUOTE.slice(); trailing[trailing.length - 1] = 1
    expect(reasonOfSync(() => parseTdxQuote(trailing))).to.equal('malformed')
  })

  it('encodes a quote that parses back to the same fields', () => {
    const m: Measurements = { mrtd: new Uint8Array(48).fill(1), rtmr: [2, 3, 4, 5].map(n => new Uint8Array(48).fill(n)) as Measurements['rtmr'] }
    const reportData = new Uint8Array(64).fill(9)
    const tdAttributes = Uint8Array.of(1, 0, 0, 0, 0, 0, 0, 0)
    let signed: Uint8Array | undefined
    const quote = encodeTdxQuote({ qeVendorId: new Uint8Array(16).fill(7), measurements: m, reportData, tdAttributes, qeSvn: 3 }, s => { signed = s; return Uint8Array.of(0xaa, 0xbb) })
    expect(quote.length).to.equal(SIGNATURE_DATA_OFFSET + 2)
    expect(Buffer.from(quote).readUInt32LE(SIGNATURE_LENGTH_OFFSET)).to.equal(2)
    const q = parseTdxQuote(quote)
    expect(hex(q.signedRegion)).to.equal(hex(signed ?? new Uint8Array())).and.to.have.length(SIGNED_LENGTH * 2)
    expect(q.qeSvn).to.equal(3)
    expect(hex(q.measurements.mrtd)).to.equal(hex(m.mrtd))
    expect(hex(q.measurements.rtmr[3])).to.equal(hex(m.rtmr[3]))
    expect(hex(q.reportData)).to.equal(hex(reportData))
    expect(hex(q.tdAttributes)).to.equal(hex(tdAttributes))
    expect(hex(q.signatureData)).to.equal('aabb')
    expect(reasonOfSync(() => encodeTdxQuote({ qeVendorId: new Uint8Array(16), measurements: m, reportData: new Uint8Array(63) }, () => new Uint8Array()))).to.equal('malformed')
  })
})

describe('DCAP verification of real TDX quotes', () => {
  it('verifies tdx_quote with its collateral at 2025-07-01 as UpToDate', async () => {
    const verifier = new DcapVerifier({ collateral: fixtureSource().source })
    const v = await verifier.verify(TDX_QUOTE, AT_2025_07_01)
    expect(v.kind).to.equal('tdx')
    expect(v.tcbStatus).to.equal('UpToDate')
    expect(v.debug).to.equal(false)
    expect(hex(v.measurements.mrtd)).to.equal(hex(TDX_QUOTE.subarray(184, 232)))
    expect(hex(v.measurements.rtmr[0])).to.equal(hex(TDX_QUOTE.subarray(376, 424)))
    expect(hex(v.reportData)).to.equal(hex(TDX_QUOTE.subarray(568, 632)))
  })

  it('refuses a quote with one REPORTDATA byte flipped as a signature failure', async () => {
    const tampered = TDX_QUOTE.slice()
    tampered[568] ^= 0x01
    expect(await reasonOf(new DcapVerifier({ collateral: fixtureSource().source }).verify(tampered, AT_2025_07_01))).to.equal('signature')
  })

  it('refuses expired collateral', async () => {
    expect(await reasonOf(new DcapVerifier({ collateral: fixtureSource().source }).verify(TDX_QUOTE, Date.parse('2026-11-22T00:00:00Z')))).to.equal('collateral')
  })

  it('refuses a truncated quote as malformed without fetching collateral', async () => {
    const { source, calls } = fixtureSource()
    expect(await reasonOf(new DcapVerifier({ collateral: source }).verify(TDX_QUOTE.subarray(0, 2000), AT_2025_07_01))).to.equal('malformed')
    expect(calls()).to.equal(0)
  })

  it('reports an unreachable PCCS as a collateral failure naming the URL', async () => {
    const url = 'http://127.0.0.1:9/sgx/certification/v4/'
    const err = await new DcapVerifier({ pccsUrl: url }).verify(TDX_QUOTE, AT_2025_07_01).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(AttestationError)
    expect((err as AttestationError).reason).to.equal('collateral')
    expect((err as Error).message).to.include(url)
  })

  it('reuses a verification result until it expires, and collateral per platform', async () => {
    const { source, calls } = fixtureSource()
    const verifier = new DcapVerifier({ collateral: source, maxResultAgeMs: HOUR })
    await verifier.verify(TDX_QUOTE, AT_2025_07_01)
    expect(verifier.stats()).to.deep.include({ resultHits: 0, resultMisses: 1, collateralFetches: 1 })

    const again = await verifier.verify(TDX_QUOTE, AT_2025_07_01 + 1000)
    expect(again.tcbStatus).to.equal('UpToDate')
    expect(verifier.stats()).to.deep.include({ resultHits: 1, resultMisses: 1 })

    // Past the maximum age: verified afresh, with the cached collateral (still valid until 2025-07-19).
    await verifier.verify(TDX_QUOTE, AT_2025_07_01 + 2 * HOUR)
    expect(verifier.stats()).to.deep.include({ resultHits: 1, resultMisses: 2, collateralHits: 1, collateralFetches: 1 })

    // A different quote from the same platform shares the collateral.
    const tampered = TDX_QUOTE.slice()
    tampered[568] ^= 0x01
    expect(await reasonOf(verifier.verify(tampered, AT_2025_07_01))).to.equal('signature')
    expect(calls()).to.equal(1)
  })

  it('never serves a cached result past the collateral expiry or before it was verified', async () => {
    const verifier = new DcapVerifier({ collateral: fixtureSource().source, maxResultAgeMs: 365 * 24 * HOUR })
    await verifier.verify(TDX_QUOTE, AT_2025_07_01)
    expect(await reasonOf(verifier.verify(TDX_QUOTE, Date.parse('2025-07-20T00:00:00Z')))).to.equal('collateral')
    await verifier.verify(TDX_QUOTE, AT_2025_07_01 - HOUR)
    expect(verifier.stats().resultHits).to.equal(0)
  })

  it('maps dcap-qvl error messages to refusal reasons', () => {
    expect(classify('TCBInfo expired')).to.equal('collateral')
    expect(classify('QE Identity expired')).to.equal('collateral')
    expect(classify('Certificate is expired or not yet valid')).to.equal('collateral')
    expect(classify('ISV enclave report signature is invalid')).to.equal('signature')
    expect(classify('Certificate is revoked')).to.equal('signature')
    expect(classify('Failed to decode quote')).to.equal('malformed')
    expect(classify('TCB status is invalid: Revoked')).to.equal('tcb')
    expect(classify('Debug mode is enabled')).to.equal('policy')
  })
})

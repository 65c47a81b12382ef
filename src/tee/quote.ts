/**
 * The Intel TDX quote v4 byte layout: a 48-byte header, the 584-byte TD
 * report body, a u32 length and the signature data. Parsing here is purely
 * structural (no signature is checked): verifiers and providers use it to
 * reach the measurements and REPORTDATA, and the simulated provider uses
 * `encodeTdxQuote` to produce quotes in exactly the layout real hardware
 * emits, so everything above this module handles one format.
 */
import { AttestationError } from '../errors.js'
import type { Measurements } from './types.js'

export const QUOTE_VERSION = 4
/** ECDSA-256 with P-256, the only attestation key type TDX QEs use. */
export const ATTESTATION_KEY_TYPE_ECDSA_P256 = 2
export const TEE_TYPE_TDX = 0x81

export const HEADER_LENGTH = 48
export const TD_REPORT_OFFSET = HEADER_LENGTH
export const TD_REPORT_LENGTH = 584
/** Header and TD report: the bytes the quote signature covers. */
export const SIGNED_LENGTH = TD_REPORT_OFFSET + TD_REPORT_LENGTH
export const SIGNATURE_LENGTH_OFFSET = SIGNED_LENGTH
export const SIGNATURE_DATA_OFFSET = SIGNATURE_LENGTH_OFFSET + 4

export const MEASUREMENT_LENGTH = 48
export const REPORT_DATA_LENGTH = 64
export const QE_VENDOR_ID_LENGTH = 16
export const USER_DATA_LENGTH = 20

/** Byte offsets of every field, from the start of the quote. */
export const OFFSETS = {
  version: 0,
  attestationKeyType: 2,
  teeType: 4,
  qeSvn: 8,
  pceSvn: 10,
  qeVendorId: 12,
  userData: 28,
  teeTcbSvn: 48,
  mrSeam: 64,
  mrSignerSeam: 112,
  seamAttributes: 160,
  tdAttributes: 168,
  xfam: 176,
  mrTd: 184,
  mrConfigId: 232,
  mrOwner: 280,
  mrOwnerConfig: 328,
  rtmr: [376, 424, 472, 520] as const,
  reportData: 568
} as const

/** Lengths of the TD report fields that are not measurements or REPORTDATA. */
const FIELD_LENGTHS = {
  teeTcbSvn: 16,
  mrSeam: 48,
  mrSignerSeam: 48,
  seamAttributes: 8,
  tdAttributes: 8,
  xfam: 8,
  mrConfigId: 48,
  mrOwner: 48,
  mrOwnerConfig: 48
} as const

type ReportField = keyof typeof FIELD_LENGTHS

export interface TdxQuote {
  version: number
  attestationKeyType: number
  teeType: number
  qeSvn: number
  pceSvn: number
  qeVendorId: Uint8Array
  userData: Uint8Array
  teeTcbSvn: Uint8Array
  mrSeam: Uint8Array
  mrSignerSeam: Uint8Array
  seamAttributes: Uint8Array
  tdAttributes: Uint8Array
  xfam: Uint8Array
  mrConfigId: Uint8Array
  mrOwner: Uint8Array
  mrOwnerConfig: Uint8Array
  measurements: Measurements
  reportData: Uint8Array
  /** Bytes 0..632: header and TD report, what the signature covers. */
  signedRegion: Uint8Array
  signatureData: Uint8Array
}

/**
 * Reads a TDX v4 quote. Throws AttestationError('malformed') when it is too
 * short, not version 4, not TDX, or its signature-data length does not fit.
 * Bytes after the signature data must be zero: quote generators pad their
 * output buffer (both real sample quotes carry 70 zero bytes), but anything
 * else there would be unsigned data riding along.
 */
export function parseTdxQuote (bytes: Uint8Array): TdxQuote {
  if (!(bytes instanceof Uint8Array)) throw new AttestationError('malformed', 'quote is not a byte array')
  if (bytes.length < SIGNATURE_DATA_OFFSET) {
    throw new AttestationError('malformed', `quote is ${bytes.length} bytes, shorter than the ${SIGNATURE_DATA_OFFSET} bytes of a TDX v4 header, TD report and length`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const version = view.getUint16(OFFSETS.version, true)
  if (version !== QUOTE_VERSION) throw new AttestationError('malformed', `quote version is ${version}, expected ${QUOTE_VERSION}`)
  const teeType = view.getUint32(OFFSETS.teeType, true)
  if (teeType !== TEE_TYPE_TDX) throw new AttestationError('malformed', `quote TEE type is 0x${teeType.toString(16)}, expected 0x${TEE_TYPE_TDX.toString(16)} (TDX)`)
  const signatureLength = view.getUint32(SIGNATURE_LENGTH_OFFSET, true)
  const end = SIGNATURE_DATA_OFFSET + signatureLength
  if (end > bytes.length) {
    throw new AttestationError('malformed', `quote says ${signatureLength} bytes of signature data follow, but only ${bytes.length - SIGNATURE_DATA_OFFSET} do`)
  }
  for (let i = end; i < bytes.length; i++) {
    if (bytes[i] !== 0) throw new AttestationError('malformed', `quote has non-zero bytes after its ${signatureLength} bytes of signature data`)
  }

  const field = (offset: number, length: number): Uint8Array => bytes.slice(offset, offset + length)
  const report = (name: ReportField): Uint8Array => field(OFFSETS[name], FIELD_LENGTHS[name])
  return {
    version,
    attestationKeyType: view.getUint16(OFFSETS.attestationKeyType, true),
    teeType,
    qeSvn: view.getUint16(OFFSETS.qeSvn, true),
    pceSvn: view.getUint16(OFFSETS.pceSvn, true),
    qeVendorId: field(OFFSETS.qeVendorId, QE_VENDOR_ID_LENGTH),
    userData: field(OFFSETS.userData, USER_DATA_LENGTH),
    teeTcbSvn: report('teeTcbSvn'),
    mrSeam: report('mrSeam'),
    mrSignerSeam: report('mrSignerSeam'),
    seamAttributes: report('seamAttributes'),
    tdAttributes: report('tdAttributes'),
    xfam: report('xfam'),
    mrConfigId: report('mrConfigId'),
    mrOwner: report('mrOwner'),
    mrOwnerConfig: report('mrOwnerConfig'),
    measurements: {
      mrtd: field(OFFSETS.mrTd, MEASUREMENT_LENGTH),
      rtmr: [
        field(OFFSETS.rtmr[0], MEASUREMENT_LENGTH),
        field(OFFSETS.rtmr[1], MEASUREMENT_LENGTH),
        field(OFFSETS.rtmr[2], MEASUREMENT_LENGTH),
        field(OFFSETS.rtmr[3], MEASUREMENT_LENGTH)
      ]
    },
    reportData: field(OFFSETS.reportData, REPORT_DATA_LENGTH),
    signedRegion: field(0, SIGNED_LENGTH),
    signatureData: field(SIGNATURE_DATA_OFFSET, signatureLength)
  }
}

/** What `encodeTdxQuote` writes; fields left out are zero. */
export interface TdxQuoteFields {
  qeSvn?: number
  pceSvn?: number
  qeVendorId: Uint8Array
  userData?: Uint8Array
  teeTcbSvn?: Uint8Array
  mrSeam?: Uint8Array
  mrSignerSeam?: Uint8Array
  seamAttributes?: Uint8Array
  tdAttributes?: Uint8Array
  xfam?: Uint8Array
  mrConfigId?: Uint8Array
  mrOwner?: Uint8Array
  mrOwnerConfig?: Uint8Array
  measurements: Measurements
  reportData: Uint8Array
}

/**
 * Lays out a TDX v4 quote. `sign` receives the signed region (bytes 0..632)
 * and returns the signature data to append, so the signer always sees the
 * exact bytes a verifier will check.
 */
export function encodeTdxQuote (fields: TdxQuoteFields, sign: (signedRegion: Uint8Array) => Uint8Array): Uint8Array {
  const signed = tdxSignedRegion(fields)
  return withSignatureData(signed, sign(signed.slice()))
}

/** The signed region (header and TD report) of a quote with these fields; see `encodeTdxQuote`. */
export function tdxSignedRegion (fields: TdxQuoteFields): Uint8Array {
  const signed = new Uint8Array(SIGNED_LENGTH)
  const view = new DataView(signed.buffer)
  view.setUint16(OFFSETS.version, QUOTE_VERSION, true)
  view.setUint16(OFFSETS.attestationKeyType, ATTESTATION_KEY_TYPE_ECDSA_P256, true)
  view.setUint32(OFFSETS.teeType, TEE_TYPE_TDX, true)
  view.setUint16(OFFSETS.qeSvn, fields.qeSvn ?? 0, true)
  view.setUint16(OFFSETS.pceSvn, fields.pceSvn ?? 0, true)
  const put = (value: Uint8Array | undefined, offset: number, length: number, what: string): void => {
    if (value == null) return
    assertLength(value, length, what)
    signed.set(value, offset)
  }
  put(fields.qeVendorId, OFFSETS.qeVendorId, QE_VENDOR_ID_LENGTH, 'QE vendor id')
  put(fields.userData, OFFSETS.userData, USER_DATA_LENGTH, 'user data')
  for (const name of Object.keys(FIELD_LENGTHS) as ReportField[]) {
    put(fields[name], OFFSETS[name], FIELD_LENGTHS[name], name)
  }
  put(fields.measurements.mrtd, OFFSETS.mrTd, MEASUREMENT_LENGTH, 'MRTD')
  fields.measurements.rtmr.forEach((rtmr, i) => { put(rtmr, OFFSETS.rtmr[i], MEASUREMENT_LENGTH, `RTMR${i}`) })
  put(fields.reportData, OFFSETS.reportData, REPORT_DATA_LENGTH, 'REPORTDATA')
  return signed
}

/** A whole quote: the signed region followed by its signature data. */
export function withSignatureData (signed: Uint8Array, signatureData: Uint8Array): Uint8Array {
  assertLength(signed, SIGNED_LENGTH, 'signed region')
  const quote = new Uint8Array(SIGNATURE_DATA_OFFSET + signatureData.length)
  quote.set(signed)
  new DataView(quote.buffer).setUint32(SIGNATURE_LENGTH_OFFSET, signatureData.length, true)
  quote.set(signatureData, SIGNATURE_DATA_OFFSET)
  return quote
}

/** Throws AttestationError('malformed') unless `bytes` is a byte array of exactly `length` bytes. */
export function assertLength (bytes: Uint8Array, length: number, what: string): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) {
    const got = bytes instanceof Uint8Array ? `${bytes.length} bytes` : typeof bytes
    throw new AttestationError('malformed', `${what} must be ${length} bytes (got ${got})`)
  }
}

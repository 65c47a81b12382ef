/**
 * A SIMULATED TEE for development and local networks. Its quotes use the
 * real TDX v4 layout (so binding, policy and transport code paths are the
 * same as in production), with the QE vendor id `COCOON-SIMULATED` and, as
 * signature data, an Ed25519 signature over bytes 0..632 followed by the
 * signing public key and a plain-text marker.
 *
 * The signing key is derived from a PUBLISHED seed: anyone can forge a
 * simulated quote with any measurements. A simulated quote proves nothing
 * about the hardware or the code running; it only exercises the protocol.
 * That is why production policies refuse the `simulated` kind outright.
 *
 * Simulated measurements are derived from the build (every compiled file)
 * and the node's config, so two nodes report the same MRTD exactly when they
 * run the same build, as a real image measurement would.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { generateKeyPairFromSeed, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { sha256, sha384 } from '@noble/hashes/sha2.js'
import { equalBytes } from '@noble/curves/utils.js'
import { concatBytes, utf8ToBytes } from '@noble/hashes/utils.js'
import { AttestationError } from '../errors.js'
import { packageRoot, packageVersion } from '../package-info.js'
import { lengthPrefixed } from './binding.js'
import { assertLength, parseTdxQuote, REPORT_DATA_LENGTH, tdxSignedRegion, withSignatureData } from './quote.js'
import type { EvidenceProvider, Measurements, QuoteVerification, QuoteVerifier } from './types.js'

/** QE vendor id of simulated quotes: 16 ASCII bytes. */
export const SIMULATED_VENDOR_ID = utf8ToBytes('COCOON-SIMULATED')
/** Trailer of the signature data, for anyone reading a simulated quote by hand. */
export const SIMULATED_MARKER = utf8ToBytes('cocoon simulated TDX quote: not hardware evidence')
/** The published seed of the development signing key. Public on purpose: see the file comment. */
export const SIMULATED_KEY_SEED = 'cocoon-p2p simulated TEE development key v1 (public; not a secret)'

const SIGNATURE_LENGTH = 64
const PUBLIC_KEY_LENGTH = 32
// Ed25519 through @libp2p/crypto: the platform's native implementation in
// Node (a quote is signed per challenge and verified per worker, thousands of
// times as a large swarm forms) and WebCrypto or a pure-JS one in browsers.
const DEV_KEY = await generateKeyPairFromSeed('Ed25519', sha256(utf8ToBytes(SIMULATED_KEY_SEED)))
/** The development public key every simulated quote must carry. */
export const SIMULATED_PUBLIC_KEY: Uint8Array = DEV_KEY.publicKey.raw
const DEV_PUBLIC_KEY = publicKeyFromRaw(SIMULATED_PUBLIC_KEY)

/** Makes simulated quotes reporting fixed measurements. */
export class SimulatedProvider implements EvidenceProvider {
  readonly kind = 'simulated' as const
  private readonly measurements: Measurements

  constructor (measurements: Measurements) {
    this.measurements = { mrtd: measurements.mrtd.slice(), rtmr: measurements.rtmr.map(r => r.slice()) as Measurements['rtmr'] }
  }

  async quote (reportData: Uint8Array): Promise<Uint8Array> {
    assertLength(reportData, REPORT_DATA_LENGTH, 'REPORTDATA')
    const signed = tdxSignedRegion({ qeVendorId: SIMULATED_VENDOR_ID, measurements: this.measurements, reportData })
    return withSignatureData(signed, concatBytes(await DEV_KEY.sign(signed), SIMULATED_PUBLIC_KEY, SIMULATED_MARKER))
  }
}

/** Checks simulated quotes: layout, marker, development key and signature. */
export class SimulatedVerifier implements QuoteVerifier {
  readonly kind = 'simulated' as const

  async verify (quote: Uint8Array): Promise<QuoteVerification> {
    const parsed = parseTdxQuote(quote)
    if (!equalBytes(parsed.qeVendorId, SIMULATED_VENDOR_ID)) {
      throw new AttestationError('malformed', 'not a simulated quote: its QE vendor id is not COCOON-SIMULATED')
    }
    const sig = parsed.signatureData
    if (sig.length !== SIGNATURE_LENGTH + PUBLIC_KEY_LENGTH + SIMULATED_MARKER.length ||
      !equalBytes(sig.subarray(SIGNATURE_LENGTH + PUBLIC_KEY_LENGTH), SIMULATED_MARKER)) {
      throw new AttestationError('malformed', 'simulated quote signature data is not signature ‖ key ‖ marker')
    }
    if (!equalBytes(sig.subarray(SIGNATURE_LENGTH, SIGNATURE_LENGTH + PUBLIC_KEY_LENGTH), SIMULATED_PUBLIC_KEY)) {
      throw new AttestationError('signature', 'simulated quote is signed by a key other than the development key')
    }
    if (!await DEV_PUBLIC_KEY.verify(parsed.signedRegion, sig.subarray(0, SIGNATURE_LENGTH))) {
      throw new AttestationError('signature', 'simulated quote signature does not verify')
    }
    return {
      kind: 'simulated',
      measurements: parsed.measurements,
      reportData: parsed.reportData,
      tdAttributes: parsed.tdAttributes,
      debug: (parsed.tdAttributes[0] & 1) === 1,
      tcbStatus: 'Simulated',
      advisoryIds: []
    }
  }
}

/**
 * Measurements a simulated TD reports: MRTD from the build, RTMR0 from the
 * Node.js runtime, RTMR3 from the config; RTMR1 and RTMR2 (kernel and
 * initrd on real hardware) are zero.
 */
export function simulatedMeasurements ({ buildDigest, configDigest }: { buildDigest: Uint8Array, configDigest: Uint8Array }): Measurements {
  const measure = (tag: string, value: Uint8Array): Uint8Array => sha384(concatBytes(utf8ToBytes(tag), value))
  return {
    mrtd: measure('cocoon-sim/mrtd', buildDigest),
    rtmr: [
      measure('cocoon-sim/runtime', utf8ToBytes(process.version)),
      new Uint8Array(48),
      new Uint8Array(48),
      measure('cocoon-sim/config', configDigest)
    ]
  }
}

let cachedBuildDigest: Uint8Array | undefined

/**
 * sha256 over the package version and every compiled `.js` file under
 * `dist/src` (path and contents, in sorted order); from the TypeScript
 * sources when there is no build. Computed once per process.
 */
export function buildDigest (): Uint8Array {
  if (cachedBuildDigest == null) {
    const root = packageRoot()
    const dist = join(root, 'dist', 'src')
    const [dir, ext] = isDirectory(dist) ? [dist, '.js'] : [join(root, 'src'), '.ts']
    const parts: Uint8Array[] = [lengthPrefixed(utf8ToBytes('cocoon-sim/build')), lengthPrefixed(utf8ToBytes(packageVersion()))]
    for (const file of listFiles(dir, ext).sort()) {
      // Relative, '/'-separated paths, so the digest is the same wherever the package is installed.
      parts.push(lengthPrefixed(utf8ToBytes(relative(dir, file).split(sep).join('/'))), lengthPrefixed(readFileSync(file)))
    }
    cachedBuildDigest = sha256(concatBytes(...parts))
  }
  return cachedBuildDigest.slice()
}

function listFiles (dir: string, ext: string): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...listFiles(path, ext))
    else if (entry.isFile() && entry.name.endsWith(ext)) out.push(path)
  }
  return out
}

function isDirectory (path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

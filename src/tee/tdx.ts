/**
 * Real TDX quotes from inside a TD, through the Linux configfs-tsm interface
 * (kernel 6.7+): make a report entry, write REPORTDATA to `inblob`, read the
 * quote from `outblob`. Every entry under the report root is shared by every
 * process in the TD; the kernel bumps an entry's `generation` on each write,
 * so reading it before and after tells us whether another writer raced us
 * between our write and our read, in which case the quote may not be ours
 * and we try again.
 *
 * File access goes through `TsmFs` so tests can emulate configfs.
 */
import { statSync } from 'node:fs'
import { mkdir, readFile, rmdir, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { equalBytes } from '@noble/curves/utils.js'
import { DEFAULT_TSM_PATH } from '../p2p/constants.js'
import { AttestationError } from '../errors.js'
import { assertLength, parseTdxQuote, REPORT_DATA_LENGTH } from './quote.js'
import type { EvidenceProvider } from './types.js'

/** The file operations TdxProvider needs; node:fs/promises by default. */
export interface TsmFs {
  mkdir(path: string): Promise<unknown>
  rmdir(path: string): Promise<void>
  readFile(path: string): Promise<Uint8Array>
  writeFile(path: string, data: Uint8Array): Promise<void>
}

const nodeFs: TsmFs = {
  mkdir: async path => mkdir(path),
  rmdir: async path => { await rmdir(path) },
  readFile: async path => readFile(path),
  writeFile: async (path, data) => { await writeFile(path, data) }
}

export const TSM_PROVIDER_TDX = 'tdx_guest'
export const DEFAULT_TSM_ATTEMPTS = 3

export interface TdxProviderOptions {
  /** The configfs-tsm report directory. */
  root?: string
  fs?: TsmFs
  /** How many entries to try when other writers race us. */
  maxAttempts?: number
}

/** Whether this machine offers configfs-tsm reports (a TD with a recent kernel). */
export function tsmAvailable (root: string = DEFAULT_TSM_PATH): boolean {
  try {
    return statSync(root).isDirectory()
  } catch {
    return false
  }
}

export class TdxProvider implements EvidenceProvider {
  readonly kind = 'tdx' as const
  private readonly root: string
  private readonly fs: TsmFs
  private readonly maxAttempts: number

  constructor (options: TdxProviderOptions = {}) {
    this.root = options.root ?? DEFAULT_TSM_PATH
    this.fs = options.fs ?? nodeFs
    this.maxAttempts = Math.max(1, options.maxAttempts ?? DEFAULT_TSM_ATTEMPTS)
  }

  async quote (reportData: Uint8Array): Promise<Uint8Array> {
    assertLength(reportData, REPORT_DATA_LENGTH, 'REPORTDATA')
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const quote = await this.attempt(reportData)
      if (quote != null) return quote
    }
    throw new AttestationError('unavailable', `configfs-tsm ${this.root}: another writer changed the report on each of ${this.maxAttempts} attempts`)
  }

  /** One report entry, start to finish; undefined when raced. The entry is always removed. */
  private async attempt (reportData: Uint8Array): Promise<Uint8Array | undefined> {
    const entry = join(this.root, `cocoon-${process.pid}-${randomBytes(6).toString('hex')}`)
    await this.op('mkdir', entry, async () => this.fs.mkdir(entry))
    let outcome: { quote: Uint8Array | undefined } | { error: unknown }
    try {
      outcome = { quote: await this.report(entry, reportData) }
    } catch (error) {
      outcome = { error }
    }
    // Removal runs even when the attempt failed: entries are kernel objects that would otherwise
    // accumulate. A removal error is reported only when it is the sole error, so it never hides the cause.
    const removal = await this.fs.rmdir(entry).then(() => undefined, (err: unknown) => unavailable('rmdir', entry, err))
    if ('error' in outcome) throw outcome.error
    if (removal != null) throw removal
    return outcome.quote
  }

  private async report (entry: string, reportData: Uint8Array): Promise<Uint8Array | undefined> {
    await this.checkProvider(entry)
    const before = await this.generation(entry)
    const inblob = join(entry, 'inblob')
    const outblob = join(entry, 'outblob')
    await this.op('write', inblob, async () => { await this.fs.writeFile(inblob, reportData) })
    const quote = await this.op('read', outblob, async () => this.fs.readFile(outblob))
    const after = await this.generation(entry)
    return after === before + 1 ? this.checkQuote(outblob, quote, reportData) : undefined
  }

  private async checkProvider (entry: string): Promise<void> {
    const path = join(entry, 'provider')
    let provider: string
    try {
      provider = new TextDecoder().decode(await this.fs.readFile(path)).trim()
    } catch (err) {
      // Older kernels have no provider attribute; the quote check below still catches a non-TDX report.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw unavailable('read', path, err)
    }
    if (provider !== TSM_PROVIDER_TDX) {
      throw new AttestationError('unavailable', `configfs-tsm ${path}: provider is ${JSON.stringify(provider)}, not ${TSM_PROVIDER_TDX}; this is not a TDX guest`)
    }
  }

  private async generation (entry: string): Promise<number> {
    const path = join(entry, 'generation')
    const text = new TextDecoder().decode(await this.op('read', path, async () => this.fs.readFile(path))).trim()
    if (!/^\d+$/.test(text)) throw new AttestationError('unavailable', `configfs-tsm ${path}: expected a number, read ${JSON.stringify(text)}`)
    return Number(text)
  }

  /** The quote, or undefined when its REPORTDATA is not ours (a race the generation count missed). */
  private checkQuote (path: string, quote: Uint8Array, reportData: Uint8Array): Uint8Array | undefined {
    let reported: Uint8Array
    try {
      reported = parseTdxQuote(quote).reportData
    } catch (err) {
      throw new AttestationError('unavailable', `configfs-tsm ${path}: not a TDX v4 quote: ${(err as Error).message}`, { cause: err })
    }
    return equalBytes(reported, reportData) ? new Uint8Array(quote) : undefined
  }

  private async op<T> (what: string, path: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn()
    } catch (err) {
      if (err instanceof AttestationError) throw err
      throw unavailable(what, path, err)
    }
  }
}

function unavailable (what: string, path: string, err: unknown): AttestationError {
  // node's own message already names the code and the path
  const e = err as NodeJS.ErrnoException
  const detail = e.code != null ? e.code : String(err)
  const hint = e.code === 'ENOENT' ? '; this machine offers no TDX quotes (not a TD, or a kernel without configfs-tsm): use --attestation simulated for development' : ''
  return new AttestationError('unavailable', `configfs-tsm: cannot ${what} ${path} (${detail})${hint}`, { cause: err })
}

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { AttestationError } from '../../src/errors.js'
import { encodeTdxQuote, parseTdxQuote } from '../../src/tee/quote.js'
import { TdxProvider, tsmAvailable } from '../../src/tee/tdx.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { TsmFs } from '../../src/tee/tdx.js'
import type { Measurements } from '../../src/tee/types.js'

const ROOT = '/sys/kernel/config/tsm/report'
const MEASUREMENTS: Measurements = { mrtd: new Uint8Array(48).fill(0x11), rtmr: [1, 2, 3, 4].map(n => new Uint8Array(48).fill(n)) as Measurements['rtmr'] }

function enoent (path: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), { code: 'ENOENT' })
}

/**
 * An in-memory configfs-tsm: each entry has a generation that counts inblob
 * writes, and outblob is a TDX quote over the last inblob. `raceOnRead`
 * makes another writer bump the generation (and change inblob) just before
 * the next that many outblob reads.
 */
class FakeTsm implements TsmFs {
  readonly entries = new Map<string, { generation: number, inblob?: Uint8Array }>()
  readonly created: string[] = []
  readonly removed: string[] = []
  provider: string | undefined = 'tdx_guest'
  raceOnRead = 0
  failMkdir?: string

  async mkdir (path: string): Promise<void> {
    if (this.failMkdir != null) throw Object.assign(new Error(`${this.failMkdir}: mkdir '${path}'`), { code: this.failMkdir })
    if (!path.startsWith(ROOT + '/')) throw enoent(path)
    this.entries.set(path, { generation: 0 })
    this.created.push(path)
  }

  async rmdir (path: string): Promise<void> {
    if (!this.entries.delete(path)) throw enoent(path)
    this.removed.push(path)
  }

  async readFile (path: string): Promise<Uint8Array> {
    const { entry, attr } = this.locate(path)
    switch (attr) {
      case 'generation': return new TextEncoder().encode(`${entry.generation}\n`)
      case 'provider':
        if (this.provider == null) throw enoent(path)
        return new TextEncoder().encode(`${this.provider}\n`)
      case 'outblob': {
        if (this.raceOnRead > 0) {
          this.raceOnRead--
          entry.generation++
          entry.inblob = new Uint8Array(64).fill(0xee)
        }
        if (entry.inblob == null) throw Object.assign(new Error('EINVAL'), { code: 'EINVAL' })
        return encodeTdxQuote({ qeVendorId: new Uint8Array(16), measurements: MEASUREMENTS, reportData: entry.inblob }, () => new Uint8Array(8))
      }
      default: throw enoent(path)
    }
  }

  async writeFile (path: string, data: Uint8Array): Promise<void> {
    const { entry, attr } = this.locate(path)
    if (attr !== 'inblob') throw Object.assign(new Error('EACCES'), { code: 'EACCES' })
    entry.inblob = data.slice()
    entry.generation++
  }

  private locate (path: string): { entry: { generation: number, inblob?: Uint8Array }, attr: string } {
    const slash = path.lastIndexOf('/')
    const entry = this.entries.get(path.slice(0, slash))
    if (entry == null) throw enoent(path)
    return { entry, attr: path.slice(slash + 1) }
  }
}

async function reasonAndMessage (promise: Promise<unknown>): Promise<[string, string]> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err, 'expected an AttestationError').to.be.instanceOf(AttestationError)
  return [(err as AttestationError).reason, (err as Error).message]
}

describe('TdxProvider on configfs-tsm', () => {
  after(cleanupTempDirs)

  it('writes REPORTDATA to inblob and returns the quote from outblob, removing its entry', async () => {
    const fs = new FakeTsm()
    const reportData = new Uint8Array(64).fill(0x42)
    const quote = await new TdxProvider({ root: ROOT, fs }).quote(reportData)
    expect(Buffer.from(parseTdxQuote(quote).reportData).toString('hex')).to.equal('42'.repeat(64))
    expect(fs.created).to.have.length(1)
    expect(fs.removed).to.deep.equal(fs.created)
    expect(fs.entries.size).to.equal(0)
  })

  it('retries in a new entry when another writer raced it', async () => {
    const fs = new FakeTsm()
    fs.raceOnRead = 2
    const quote = await new TdxProvider({ root: ROOT, fs }).quote(new Uint8Array(64).fill(0x42))
    expect(parseTdxQuote(quote).reportData[0]).to.equal(0x42)
    expect(fs.created).to.have.length(3)
    expect(new Set(fs.created).size).to.equal(3)
    expect(fs.removed).to.deep.equal(fs.created)
  })

  it('gives up after a bounded number of races', async () => {
    const fs = new FakeTsm()
    fs.raceOnRead = 10
    const [reason, message] = await reasonAndMessage(new TdxProvider({ root: ROOT, fs, maxAttempts: 3 }).quote(new Uint8Array(64)))
    expect(reason).to.equal('unavailable')
    expect(message).to.include('3 attempts')
    expect(fs.created).to.have.length(3)
    expect(fs.entries.size).to.equal(0)
  })

  it('refuses a provider other than tdx_guest, and still removes the entry', async () => {
    const fs = new FakeTsm()
    fs.provider = 'sev_guest'
    const [reason, message] = await reasonAndMessage(new TdxProvider({ root: ROOT, fs }).quote(new Uint8Array(64)))
    expect(reason).to.equal('unavailable')
    expect(message).to.include('sev_guest')
    expect(fs.created).to.have.length(1)
    expect(fs.entries.size).to.equal(0)
  })

  it('works without a provider attribute (older kernels)', async () => {
    const fs = new FakeTsm()
    fs.provider = undefined
    await new TdxProvider({ root: ROOT, fs }).quote(new Uint8Array(64))
    expect(fs.entries.size).to.equal(0)
  })

  it('reports an OS error with the path', async () => {
    const fs = new FakeTsm()
    fs.failMkdir = 'EACCES'
    const [reason, message] = await reasonAndMessage(new TdxProvider({ root: ROOT, fs }).quote(new Uint8Array(64)))
    expect(reason).to.equal('unavailable')
    expect(message).to.include(ROOT).and.to.include('EACCES')
  })

  it('refuses REPORTDATA that is not 64 bytes', async () => {
    const [reason] = await reasonAndMessage(new TdxProvider({ root: ROOT, fs: new FakeTsm() }).quote(new Uint8Array(32)))
    expect(reason).to.equal('malformed')
  })

  it('detects configfs-tsm by its report directory', async () => {
    const dir = await tempDir()
    expect(tsmAvailable(join(dir, 'tsm', 'report'))).to.equal(false)
    await mkdir(join(dir, 'tsm', 'report'), { recursive: true })
    expect(tsmAvailable(join(dir, 'tsm', 'report'))).to.equal(true)
  })

  it('fails as unavailable against a real directory that is not configfs', async () => {
    const dir = await tempDir()
    const [reason, message] = await reasonAndMessage(new TdxProvider({ root: dir }).quote(new Uint8Array(64)))
    expect(reason).to.equal('unavailable')
    expect(message).to.include(dir)
  })
})

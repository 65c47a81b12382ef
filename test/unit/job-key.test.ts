import { chmod, mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { x25519 } from '@noble/curves/ed25519.js'
import { expect } from 'chai'
import { IdentityError } from '../../src/errors.js'
import { JOB_KEY_FILE, loadOrCreateJobKey } from '../../src/tee/job-key.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('job-encryption key', () => {
  after(cleanupTempDirs)

  it('creates an X25519 key with mode 0600 and loads the same key again', async () => {
    const dir = join(await tempDir(), 'nested', 'data')
    const first = await loadOrCreateJobKey(dir)
    expect(first.created).to.equal(true)
    expect(first.path).to.equal(join(dir, JOB_KEY_FILE))
    expect(first.privateKey).to.have.length(32)
    expect(hex(first.publicKey)).to.equal(hex(x25519.getPublicKey(first.privateKey)))
    expect((await stat(first.path)).mode & 0o777).to.equal(0o600)
    expect(await readdir(dir)).to.deep.equal([JOB_KEY_FILE])
    const second = await loadOrCreateJobKey(dir)
    expect(second.created).to.equal(false)
    expect(hex(second.privateKey)).to.equal(hex(first.privateKey))
    expect(hex(second.publicKey)).to.equal(hex(first.publicKey))
  })

  it('gives two data dirs keys that agree on a shared secret', async () => {
    const a = await loadOrCreateJobKey(await tempDir())
    const b = await loadOrCreateJobKey(await tempDir())
    expect(hex(a.publicKey)).to.not.equal(hex(b.publicKey))
    expect(hex(x25519.getSharedSecret(a.privateKey, b.publicKey))).to.equal(hex(x25519.getSharedSecret(b.privateKey, a.publicKey)))
  })

  it('creates one key when two loads race', async () => {
    const dir = await tempDir()
    const [a, b] = await Promise.all([loadOrCreateJobKey(dir), loadOrCreateJobKey(dir)])
    expect(hex(a.publicKey)).to.equal(hex(b.publicKey))
    expect([a.created, b.created].filter(Boolean)).to.have.length(1)
    expect(await readdir(dir)).to.deep.equal([JOB_KEY_FILE])
  })

  it('refuses a corrupt key file and leaves it untouched', async () => {
    const dir = await tempDir()
    const path = join(dir, JOB_KEY_FILE)
    await writeFile(path, 'not a key', { mode: 0o600 })
    const err = await loadOrCreateJobKey(dir).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.include('is not a job key')
    expect(await readFile(path, 'utf8')).to.equal('not a key')
  })

  it('refuses a key whose private half was altered', async () => {
    const dir = await tempDir()
    const { path } = await loadOrCreateJobKey(dir)
    const bytes = await readFile(path)
    bytes[10] ^= 1
    await writeFile(path, bytes)
    const err = await loadOrCreateJobKey(dir).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.include('does not match')
  })

  it('refuses a key file that other users can read', async () => {
    const dir = await tempDir()
    const { path } = await loadOrCreateJobKey(dir)
    await chmod(path, 0o640)
    const err = await loadOrCreateJobKey(dir).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.include('chmod 600')
  })

  it('refuses a key path that is not a file', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, JOB_KEY_FILE))
    const err = await loadOrCreateJobKey(dir).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.include('not a regular file')
  })
})

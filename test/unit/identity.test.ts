import { chmod, mkdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { IdentityError } from '../../src/errors.js'
import { IDENTITY_FILE, loadOrCreateIdentity } from '../../src/p2p/identity.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'

describe('node identity', () => {
  after(cleanupTempDirs)

  it('creates a key with mode 0600 and loads the same PeerId again', async () => {
    const dir = join(await tempDir(), 'nested', 'data')
    const first = await loadOrCreateIdentity(dir)
    expect(first.created).to.equal(true)
    expect((await stat(first.path)).mode & 0o777).to.equal(0o600)
    const second = await loadOrCreateIdentity(dir)
    expect(second.created).to.equal(false)
    expect(second.peerId.equals(first.peerId)).to.equal(true)
  })

  it('refuses a corrupt key file instead of replacing it', async () => {
    const dir = await tempDir()
    await writeFile(join(dir, IDENTITY_FILE), 'not a key', { mode: 0o600 })
    const err = await loadOrCreateIdentity(dir).catch(e => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as IdentityError).code).to.equal('ERR_IDENTITY')
    expect((err as Error).message).to.match(/is not a libp2p private key/)
  })

  it('refuses a key file that other users can read', async () => {
    const dir = await tempDir()
    const { path } = await loadOrCreateIdentity(dir)
    await chmod(path, 0o644)
    const err = await loadOrCreateIdentity(dir).catch(e => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.include('chmod 600')
  })

  it('reports a key path that cannot be read as a file', async () => {
    const dir = await tempDir()
    await mkdir(join(dir, IDENTITY_FILE))
    const err = await loadOrCreateIdentity(dir).catch(e => e)
    expect(err).to.be.instanceOf(IdentityError)
    expect((err as Error).message).to.match(/not a regular file|cannot be read/)
  })

  it('does not create a key when asked only to load one', async () => {
    const err = await loadOrCreateIdentity(await tempDir(), { create: false }).catch(e => e)
    expect(err).to.be.instanceOf(IdentityError)
  })
})

import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { ConfigError } from '../../src/errors.js'
import { BOOTSTRAP_TCP_PORT, loadConfig } from '../../src/config/load.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'

const PEER = '/ip4/127.0.0.1/tcp/4100/p2p/12D3KooWCQNUWMpbdWrFSN6TAx1aVPMYLyscpbLp6EfnAcA4zqGV'

describe('configuration', () => {
  let home: string
  before(async () => { home = await tempDir() })
  after(cleanupTempDirs)

  const env = (extra: Record<string, string> = {}): NodeJS.ProcessEnv => ({ COCOON_HOME: home, ...extra })

  async function configError (promise: Promise<unknown>): Promise<ConfigError> {
    const err = await promise.catch(e => e)
    expect(err).to.be.instanceOf(ConfigError)
    return err as ConfigError
  }

  it('fills defaults from the role and network', async () => {
    const config = await loadConfig({ flags: { role: 'bootstrap' }, env: env() })
    expect(config.network).to.equal('local')
    expect(config.dataDir).to.equal(join(home, 'local', 'bootstrap'))
    expect(config.listen).to.deep.equal([`/ip4/127.0.0.1/tcp/${BOOTSTRAP_TCP_PORT}`, `/ip4/127.0.0.1/tcp/${BOOTSTRAP_TCP_PORT + 1}/ws`])
    expect(config.admin).to.deep.equal({ enabled: true, host: '127.0.0.1', port: 0 })
    const worker = await loadConfig({ flags: { role: 'worker', network: 'public' }, env: env() })
    expect(worker.listen).to.include('/p2p-circuit')
    expect(worker.listen).to.include('/ip4/0.0.0.0/tcp/0')
  })

  it('applies flags over environment over file over defaults', async () => {
    const file = join(await tempDir(), 'cocoon.json')
    await writeFile(file, JSON.stringify({ role: 'proxy', logLevel: 'debug', maxConnections: 50, admin: { port: 9000 } }))
    const fromFile = await loadConfig({ configPath: file, env: env() })
    expect(fromFile).to.include({ role: 'proxy', logLevel: 'debug', maxConnections: 50 })
    expect(fromFile.admin.port).to.equal(9000)
    expect(fromFile.admin.host).to.equal('127.0.0.1')

    const fromEnv = await loadConfig({ configPath: file, env: env({ COCOON_LOG_LEVEL: 'warn', COCOON_ADMIN_PORT: '9100', COCOON_BOOTSTRAP: `${PEER}` }) })
    expect(fromEnv.logLevel).to.equal('warn')
    expect(fromEnv.admin.port).to.equal(9100)
    expect(fromEnv.bootstrap).to.deep.equal([PEER])

    const fromFlags = await loadConfig({ configPath: file, env: env({ COCOON_LOG_LEVEL: 'warn', COCOON_CONFIG: '/nonexistent' }), flags: { logLevel: 'error', role: 'worker' } })
    expect(fromFlags.logLevel).to.equal('error')
    expect(fromFlags.role).to.equal('worker')
  })

  it('names the key and the expected form for bad values', async () => {
    const role = await configError(loadConfig({ flags: { role: 'miner' }, env: env() }))
    expect(role.key).to.equal('role')
    expect(role.message).to.equal('role: expected one of bootstrap, worker, proxy, client (got "miner")')

    const listen = await configError(loadConfig({ flags: { role: 'worker', listen: ['/ip4/127.0.0.1/tcp/0', 'tcp://1.2.3.4'] }, env: env() }))
    expect(listen.key).to.equal('listen[1]')
    expect(listen.message).to.match(/expected a multiaddr/)

    const bootstrap = await configError(loadConfig({ flags: { role: 'worker', bootstrap: ['/ip4/127.0.0.1/tcp/4100'] }, env: env() }))
    expect(bootstrap.key).to.equal('bootstrap[0]')
    expect(bootstrap.message).to.match(/ends in \/p2p\/<peer-id>/)

    const port = await configError(loadConfig({ flags: { role: 'worker' }, env: env({ COCOON_ADMIN_PORT: '70000' }) }))
    expect(port.key).to.equal('admin.port')

    const host = await configError(loadConfig({ flags: { role: 'worker', admin: { host: '0.0.0.0' } }, env: env() }))
    expect(host.key).to.equal('admin.host')
    expect(host.message).to.include('loopback')

    const network = await configError(loadConfig({ flags: { role: 'worker', network: 'mainnet' }, env: env() }))
    expect(network.key).to.equal('network')

    const missing = await configError(loadConfig({ env: env() }))
    expect(missing.key).to.equal('role')
  })

  it('takes a worker\'s models and attestation settings from a file, and names the key of a bad one', async () => {
    const file = join(await tempDir(), 'worker.json')
    await writeFile(file, JSON.stringify({
      role: 'worker',
      worker: { models: [{ name: 'llama-3.1-8b', contextLength: 8192, pricePromptPerM: 1000, priceCompletionPerM: 3000, maxConcurrent: 8 }], accelerators: 'cpu' },
      attestation: { acceptSimulated: false }
    }))
    const config = await loadConfig({ configPath: file, env: env({ COCOON_ATTESTATION_PROVIDER: 'simulated' }) })
    expect(config.worker.models.map(m => m.name)).to.deep.equal(['llama-3.1-8b'])
    expect(config.worker.accelerators).to.equal('cpu')
    expect(config.worker.announceIntervalMs).to.equal(5_000)
    expect(config.worker.gossip).to.equal(true)
    expect(config.attestation).to.include({ provider: 'simulated', acceptSimulated: false, tsmPath: '/sys/kernel/config/tsm/report' })

    const provider = await configError(loadConfig({ flags: { role: 'worker' }, env: env({ COCOON_ATTESTATION_PROVIDER: 'sgx' }) }))
    expect(provider.message).to.equal('attestation.provider: expected auto, tdx or simulated (got "sgx")')
    const name = await configError(loadConfig({ flags: { role: 'worker', worker: { models: [{ name: 'bad name', contextLength: 1, pricePromptPerM: 0, priceCompletionPerM: 0, maxConcurrent: 1 }] } }, env: env() }))
    expect(name.key).to.equal('worker.models[0].name')
    const price = await configError(loadConfig({ flags: { role: 'worker', worker: { models: [{ name: 'm', contextLength: 1, pricePromptPerM: -1, priceCompletionPerM: 0, maxConcurrent: 1 }] } }, env: env() }))
    expect(price.message).to.match(/worker\.models\[0\]\.pricePromptPerM: expected a price in nanoTON per 1M prompt tokens, a whole number from 0/)
    const free = await configError(loadConfig({ flags: { role: 'worker', worker: { models: [{ name: 'm', contextLength: 1, pricePromptPerM: 0, priceCompletionPerM: 0, maxConcurrent: 1 }] } }, env: env() }))
    expect(free.message).to.equal('worker.models[0].priceCompletionPerM: 0 is under the local network\'s floor of 1 nanoTON per 1M completion tokens')
    const slow = await configError(loadConfig({ flags: { role: 'worker', worker: { announceIntervalMs: 600_000 } }, env: env() }))
    expect(slow.key).to.equal('worker.announceIntervalMs')
    const mrtd = await configError(loadConfig({ flags: { role: 'proxy', attestation: { allowedMrtd: ['abc'] } }, env: env() }))
    expect(mrtd.message).to.match(/attestation\.allowedMrtd\[0\]: expected an MRTD as 96 lower-case hex digits/)
  })

  it('rejects unknown keys and unreadable or invalid config files', async () => {
    const dir = await tempDir()
    const unknown = join(dir, 'unknown.json')
    await writeFile(unknown, JSON.stringify({ role: 'worker', dht: { addressFilter: 'all', bucket: 3 } }))
    const err = await configError(loadConfig({ configPath: unknown, env: env() }))
    expect(err.key).to.equal('dht.bucket')
    expect(err.message).to.include('unknown key')

    const broken = join(dir, 'broken.json')
    await writeFile(broken, '{ "role": ')
    expect((await configError(loadConfig({ configPath: broken, env: env() }))).message).to.include('not valid JSON')
    expect((await configError(loadConfig({ configPath: join(dir, 'missing.json'), env: env() }))).message).to.include('ENOENT')
  })
})

import { mkdir, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { expect } from 'chai'
import { BOOTSTRAP_TCP_PORT } from '../../src/config/load.js'
import { tempDir, waitFor } from '../helpers.js'
import { CliSuite } from '../cli-harness.js'
import { readNodeFile } from '../../src/ops/node-file.js'
import type { NodeFile } from '../../src/ops/node-file.js'

async function portIsFree (port: number): Promise<boolean> {
  return new Promise(resolve => {
    const server = createServer()
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

describe('the cocoon command', function () {
  this.timeout(60_000)
  const cli = new CliSuite()
  const start = (args: string[]): ReturnType<CliSuite['start']> => cli.start(args)

  async function nodeFile (role: string, proc: { output: () => string }): Promise<NodeFile> {
    return cli.nodeFile(join(cli.home, 'local', role), proc, 20_000)
  }

  it('runs a bootstrap and a worker as processes that join, and reports both in status', async () => {
    expect(await portIsFree(BOOTSTRAP_TCP_PORT), `port ${BOOTSTRAP_TCP_PORT} (the bootstrap default) must be free for this test`).to.equal(true)
    const boot = start(['node', '--role', 'bootstrap'])
    const bootFile = await nodeFile('bootstrap', boot)
    expect(bootFile.addrs).to.include(`/ip4/127.0.0.1/tcp/${BOOTSTRAP_TCP_PORT}/p2p/${bootFile.peerId}`)
    const bootAddr = bootFile.addrs.find(a => a.includes(`/tcp/${BOOTSTRAP_TCP_PORT}/p2p/`))!

    const worker = start(['node', '--role', 'worker', '--bootstrap', bootAddr])
    const workerFile = await nodeFile('worker', worker)

    await waitFor(async () => {
      const r = await cli.run(['status', '--role', 'worker'])
      return r.code === 0 && r.stdout.includes(bootFile.peerId)
    }, 10_000, 'cocoon status on the worker to list the bootstrap node')
    await waitFor(async () => {
      const r = await cli.run(['status', '--role', 'bootstrap'])
      return r.code === 0 && r.stdout.includes(workerFile.peerId)
    }, 10_000, 'cocoon status on the bootstrap node to list the worker')

    // on the same machine a node finds the running local bootstrap node without --bootstrap
    const proxy = start(['node', '--role', 'proxy'])
    await nodeFile('proxy', proxy)
    await waitFor(async () => {
      const r = await cli.run(['status', '--role', 'proxy'])
      return r.code === 0 && r.stdout.includes(bootFile.peerId)
    }, 10_000, 'the proxy, started without --bootstrap, to join the local bootstrap node')
    // the proxy attests the worker and lists what it offers
    await waitFor(async () => {
      const r = await cli.run(['status', '--role', 'proxy'])
      return new RegExp(`cocoon-synthetic\\s+\\d+/\\d+\\s+\\d+/\\d+\\s+simulated Simulated\\s.*\\sup\\s.*${workerFile.peerId}`).test(r.stdout)
    }, 10_000, 'cocoon status on the proxy to list the attested worker')
    const workerStatus = await cli.run(['status', '--role', 'worker'])
    expect(workerStatus.stdout).to.match(/announces\s+on gossip, \d+ published/)
    expect(workerStatus.stdout).to.match(/cocoon-synthetic\s+2048\s+20000000\/80000000\s+4\/4/)
    expect(workerStatus.stdout).to.match(/attestation simulated, image [0-9a-f]{16}/)
    proxy.child.kill('SIGTERM')
    expect(await proxy.exited).to.equal(0)

    const bootStatus = await cli.run(['status', '--role', 'bootstrap'])
    expect(bootStatus.stdout).to.match(new RegExp(`worker\\s+${workerFile.peerId}`))
    expect(bootStatus.stdout).to.include('/cocoon/kad/1.0.0 server mode')
    const all = await cli.run(['status', '--json'])
    expect(all.code).to.equal(0)
    const parsed = JSON.parse(all.stdout) as Array<{ peerId: string }>
    expect(parsed.map(s => s.peerId).sort()).to.deep.equal([bootFile.peerId, workerFile.peerId].sort())

    // graceful shutdown on SIGTERM and SIGINT: exit 0 and remove the node file
    worker.child.kill('SIGTERM')
    boot.child.kill('SIGINT')
    expect(await worker.exited).to.equal(0)
    expect(await boot.exited).to.equal(0)
    expect(await readNodeFile(join(cli.home, 'local', 'worker'))).to.equal(undefined)
    expect(worker.output()).to.include('stopped')

    // the same identity on the next start
    const id = await cli.run(['id', '--role', 'worker'])
    expect(id.stdout.trim()).to.equal(workerFile.peerId)
  })

  it('rejects bad input with a one-line error and exit code 2', async () => {
    const role = await cli.run(['node', '--role', 'miner'])
    expect(role.code).to.equal(2)
    expect(role.stderr.trim()).to.equal('cocoon: role: expected one of bootstrap, worker, proxy, client (got "miner")')

    const addr = await cli.run(['node', '--role', 'worker', '--listen', '/ip4/127.0.0.1/tcp/0', '--listen', '127.0.0.1:4000'])
    expect(addr.code).to.equal(2)
    expect(addr.stderr.trim().split('\n')).to.have.length(1)
    expect(addr.stderr).to.match(/^cocoon: listen\[1\]: expected a multiaddr/)

    const bootstrap = await cli.run(['node', '--role', 'worker', '--bootstrap', '/ip4/127.0.0.1/tcp/4100'])
    expect(bootstrap.code).to.equal(2)
    expect(bootstrap.stderr).to.match(/^cocoon: bootstrap\[0\]: expected a multiaddr that ends in \/p2p\/<peer-id>/)

    const badKeyDir = join(await tempDir(), 'node')
    await mkdir(badKeyDir, { recursive: true })
    await writeFile(join(badKeyDir, 'identity.key'), 'garbage', { mode: 0o600 })
    const key = await cli.run(['node', '--role', 'worker', '--data-dir', badKeyDir, '--listen', '/ip4/127.0.0.1/tcp/0'])
    expect(key.code).to.equal(2)
    expect(key.stderr).to.match(/^cocoon: identity .*identity\.key: is not a libp2p private key/)

    const flag = await cli.run(['node', '--role', 'worker', '--colour'])
    expect(flag.code).to.equal(2)
    expect(flag.stderr).to.match(/^cocoon: Unknown option '--colour'/)

    const command = await cli.run(['launch'])
    expect(command.code).to.equal(2)

    const nothing = await cli.run(['status'], 15_000, { COCOON_HOME: await tempDir() })
    expect(nothing.code).to.equal(1)
    expect(nothing.stderr).to.match(/no running node found/)
  })

  it('runs a whole devnet once: the proxy attests both workers and a sample completion streams back', async () => {
    const r = await cli.run(['devnet', '--once', '--backend', 'synthetic', '--api-port', '0', '--data-dir', join(cli.home, 'devnet')], 60_000)
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/the proxy attested 2 workers after \d+ ms/)
    expect(r.stdout).to.match(/OpenAI-compatible API: http:\/\/127\.0\.0\.1:\d+\/v1/)
    expect(r.stdout).to.match(/answer \(48 chunks streamed\): "[a-z ]+/)
    expect(r.stdout).to.match(/usage: \d+ prompt \+ 48 completion tokens; first chunk after \d+ ms/)
    expect(r.stdout.match(/simulated attestation \(image [0-9a-f]{12}…\)\s+cocoon-synthetic at 20000000\/80000000 nanoTON/g)).to.have.length(2)
    // paid on the devnet chain: channels first, then the split of the sample's cost
    expect(r.stdout).to.match(/client → proxy: 0:[0-9a-f]{64} holds 2 TON/)
    expect(r.stdout.match(/proxy → worker-\d: 0:[0-9a-f]{64} holds 2 TON/g)).to.have.length(2)
    const paid = /the client paid (\d+) nanoTON, the worker earned (\d+), the proxy kept (\d+)/.exec(r.stdout)
    expect(paid, r.stdout).to.not.equal(null)
    const [client, worker, kept] = (paid as RegExpExecArray).slice(1).map(BigInt)
    expect(client).to.equal(worker + kept)
    expect(kept > 0n).to.equal(true)
  })

  it('prints help and version', async () => {
    const help = await cli.run(['--help'])
    expect(help.code).to.equal(0)
    expect(help.stdout).to.include('cocoon node --role <bootstrap|worker|proxy|client>')
    const version = await cli.run(['--version'])
    expect(version.stdout.trim()).to.match(/^\d+\.\d+\.\d+/)
  })
})

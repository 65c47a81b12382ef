/**
 * Settlement across processes, driven by the CLI: `cocoon chain` serves one
 * devnet, a bootstrap, a proxy, a worker and a client run as `cocoon node`
 * processes settling on it, and `cocoon channel` / `cocoon wallet` act
 * through the client's admin endpoint.
 */
import { readFile, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { waitFor } from '../helpers.js'
import { CliSuite } from '../cli-harness.js'
import type { NodeFile } from '../../src/ops/node-file.js'

describe('settlement from the command line, across processes', function () {
  this.timeout(90_000)
  const cli = new CliSuite()
  const cocoon = async (args: string[]): ReturnType<CliSuite['run']> => cli.run(args, 60_000)
  const start = (args: string[]): ReturnType<CliSuite['start']> => cli.start(args)
  const nodeFile = async (dir: string, proc: { output: () => string }): Promise<NodeFile> => cli.nodeFile(dir, proc)

  it('opens a channel with cocoon channel, pays for a completion, and closes it on the shared devnet', async () => {
    const chain = start(['chain', '--port', '0', '--data-dir', join(cli.home, 'chain')])
    let url = ''
    await waitFor(() => { url = /served on (http:\/\/127\.0\.0\.1:\d+)/.exec(chain.output())?.[1] ?? ''; return url !== '' }, 20_000, `cocoon chain to serve; its output:\n${chain.output()}`)
    const dirs = { bootstrap: join(cli.home, 'b'), proxy: join(cli.home, 'p'), worker: join(cli.home, 'w'), client: join(cli.home, 'c') }
    const common = ['--listen', '/ip4/127.0.0.1/tcp/0', '--no-default-bootstrap', '--log-level', 'info', '--admin-port', '0']
    const boot = start(['node', '--role', 'bootstrap', '--data-dir', dirs.bootstrap, ...common])
    const bootAddr = (await nodeFile(dirs.bootstrap, boot)).addrs[0]
    const settle = ['--settlement', '--chain-endpoint', url, '--bootstrap', bootAddr]
    const proxy = start(['node', '--role', 'proxy', '--data-dir', dirs.proxy, ...common, ...settle])
    const worker = start(['node', '--role', 'worker', '--backend', 'synthetic', '--data-dir', dirs.worker, ...common, ...settle])
    const client = start(['node', '--role', 'client', '--api-port', '0', '--data-dir', dirs.client, ...common, ...settle])
    const proxyFile = await nodeFile(dirs.proxy, proxy)
    await nodeFile(dirs.worker, worker)
    await nodeFile(dirs.client, client)
    expect(proxy.output()).to.match(/settles on devnet: wallet 0:[0-9a-f]{64} holds [\d.]+ TON/)

    // the client's API, once it knows the proxy and the proxy knows the worker
    let api = ''
    await waitFor(async () => {
      const st = await cocoon(['status', '--data-dir', dirs.client, '--json'])
      api = (JSON.parse(st.stdout || '{}') as { roleStatus?: { api?: string } }).roleStatus?.api ?? ''
      if (api === '') return false
      const models = await fetch(`${api}/v1/models`).then(async r => r.ok ? await r.json() as { data: unknown[] } : { data: [] }, () => ({ data: [] }))
      return models.data.length > 0
    }, 40_000, `the client to see the worker's model; client output:\n${client.output()}`)

    const wallet = await cocoon(['wallet', '--data-dir', dirs.client])
    expect(wallet.code, wallet.stderr).to.equal(0)
    expect(wallet.stdout).to.match(/^wallet 0:[0-9a-f]{64}: [\d.]+ TON/)

    const opened = await cocoon(['channel', 'open', proxyFile.peerId, '--data-dir', dirs.client])
    expect(opened.code, opened.stderr).to.equal(0)
    const channel = /channel (0:[0-9a-f]{64}) open to/.exec(opened.stdout)?.[1] as string
    expect(channel, opened.stdout).to.be.a('string')

    const res = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'paid hello' }] }) })
    expect(res.status).to.equal(200)
    const body = await res.json() as { usage: { cost_nanoton: { client: string } }, cocoon: { cost_nanoton: { channel: string } } }
    expect(body.cocoon.cost_nanoton.channel).to.equal(channel)
    const cost = body.usage.cost_nanoton.client

    const listed = await cocoon(['channel', 'list', '--data-dir', dirs.client, '--json'])
    const rows = JSON.parse(listed.stdout) as Array<{ address: string, side: string, cumulative: string }>
    expect(rows.find(r => r.address === channel)).to.include({ side: 'payer', cumulative: cost })
    const text = await cocoon(['channel', 'list', '--data-dir', dirs.client])
    expect(text.stdout).to.include(`${channel}  pays ${proxyFile.peerId}  open`)

    // paying outside a job, over /cocoon/pay: the proxy countersigns it
    const paidMore = await cocoon(['channel', 'pay', channel, '1000n', '--data-dir', dirs.client])
    expect(paidMore.code, paidMore.stderr).to.equal(0)
    expect(paidMore.stdout).to.match(/state \d+ pays [\d.]+ TON in all, countersigned/)
    const after = JSON.parse((await cocoon(['channel', 'list', '--data-dir', dirs.client, '--json'])).stdout) as Array<{ address: string, cumulative: string, countersigned: string }>
    const row = after.find(r => r.address === channel)
    expect(row?.cumulative).to.equal((BigInt(cost) + 1000n).toString())
    expect(row?.countersigned).to.equal(row?.cumulative)

    const status = await cocoon(['status', '--data-dir', dirs.proxy])
    expect(status.stdout).to.match(/settlement devnet, wallet 0:[0-9a-f]{64} [\d.]+ TON, \d+ channels? open or closing/)

    const closed = await cocoon(['channel', 'close', channel, '--data-dir', dirs.client])
    expect(closed.code, closed.stderr).to.equal(0)
    expect(closed.stdout).to.include(`channel ${channel} closed and paid out`)

    // bad input: a clear one-line error and a non-zero exit, the node keeps running
    const again = await cocoon(['channel', 'close', channel, '--data-dir', dirs.client])
    expect(again.code).to.equal(1)
    expect(again.stderr).to.match(/cocoon: POST \/channels\/close: /)
    const badAmount = await cocoon(['channel', 'topup', channel, 'lots', '--data-dir', dirs.client])
    expect(badAmount.code).to.equal(2)
    expect(badAmount.stderr).to.match(/amount: "lots" is not an amount/)
    // a real network never makes up a wallet: the node refuses to start, naming the key
    const noWords = await cocoon(['node', '--role', 'client', '--settlement', '--chain', 'mainnet', '--data-dir', join(cli.home, 'm'), ...common])
    expect(noWords.code).to.equal(2)
    expect(noWords.stderr).to.match(/^cocoon: settlement\.mnemonicFile: required on mainnet/m)
    const unknown = await cocoon(['wallet', 'spend', '--data-dir', dirs.client])
    expect(unknown.code).to.equal(2)

    // a wallet for a real network: words in a 0600 file, never printed, never overwritten
    const file = join(cli.home, 'testnet.mnemonic')
    const created = await cocoon(['wallet', 'create', '--mnemonic-file', file, '--chain', 'testnet'])
    expect(created.code, created.stderr).to.equal(0)
    expect(created.stdout).to.match(/testnet wallet \S+ \(0:[0-9a-f]{64}\)/)
    const words = (await readFile(file, 'utf8')).trim().split(/\s+/)
    expect(words).to.have.length(24)
    expect(created.stdout + created.stderr).to.not.include(words[0] + ' ' + words[1])
    expect((await stat(file)).mode & 0o777).to.equal(0o600)
    const twice = await cocoon(['wallet', 'create', '--mnemonic-file', file])
    expect(twice.code).to.equal(2)
    expect(twice.stderr).to.match(/already exists/)
    expect((await cocoon(['wallet', '--data-dir', dirs.client])).code).to.equal(0)
  })
})

/**
 * Settlement across processes, driven by the CLI: `cocoon chain` serves one
 * devnet, a bootstrap, a proxy, a worker and a client run as `cocoon node`
 * processes settling on it, and `cocoon channel` / `cocoon wallet` act
 * through the client's admin endpoint.
 */
import { readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { waitFor } from '../helpers.js'
import { CliSuite, freePort } from '../cli-harness.js'
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
    const api = await cli.clientApi(dirs.client, client)

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

    // the devnet faucet, and a top-up the proxy hears of: its /metrics shows the new deposit
    const before = Number(/: ([\d.]+) TON/.exec((await cocoon(['wallet', '--data-dir', dirs.client])).stdout)?.[1])
    const funded = await cocoon(['wallet', 'faucet', '5', '--data-dir', dirs.client])
    expect(funded.code, funded.stderr).to.equal(0)
    expect(Number(/: ([\d.]+) TON/.exec(funded.stdout)?.[1])).to.be.closeTo(before + 5, 0.001)
    const topped = await cocoon(['channel', 'topup', channel, '0.5', '--data-dir', dirs.client])
    expect(topped.code, topped.stderr).to.equal(0)
    expect(topped.stdout).to.include(`channel ${channel} now holds 2.5 TON in all`)
    const metrics = await (await fetch(`${proxyFile.admin as string}/metrics`)).text()
    expect(metrics).to.match(new RegExp(`cocoon_channel_nanoton\\{[^}]*channel="${channel}"[^}]*kind="deposited"[^}]*\\} 2500000000`))

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

  it('loses no signed state when the proxy process is killed with SIGKILL mid-stream, and resumes the channel', async () => {
    const chain = start(['chain', '--port', '0', '--data-dir', join(cli.home, 'chain-2')])
    let url = ''
    await waitFor(() => { url = /served on (http:\/\/127\.0\.0\.1:\d+)/.exec(chain.output())?.[1] ?? ''; return url !== '' }, 20_000, `cocoon chain to serve; its output:\n${chain.output()}`)
    const dirs = { bootstrap: join(cli.home, 'b2'), proxy: join(cli.home, 'p2'), worker: join(cli.home, 'w2'), client: join(cli.home, 'c2') }
    const common = ['--no-default-bootstrap', '--log-level', 'info', '--admin-port', '0']
    const boot = start(['node', '--role', 'bootstrap', '--data-dir', dirs.bootstrap, '--listen', '/ip4/127.0.0.1/tcp/0', ...common])
    const bootAddr = (await nodeFile(dirs.bootstrap, boot)).addrs[0]
    const settle = ['--settlement', '--chain-endpoint', url, '--bootstrap', bootAddr]
    // a tight credit window, so the client pays every dozen tokens; a slow worker, so there is a middle to kill in
    const proxyConfig = join(cli.home, 'proxy2.json')
    await writeFile(proxyConfig, JSON.stringify({ settlement: { creditWindow: 2_000 } }))
    const workerConfig = join(cli.home, 'worker2.json')
    await writeFile(workerConfig, JSON.stringify({ worker: { backend: 'synthetic', synthetic: { chunks: 400, chunkBytes: 16, intervalMs: 10, firstChunkDelayMs: 0 } } }))
    const port = await freePort()
    const proxyArgs = ['node', '--role', 'proxy', '--config', proxyConfig, '--data-dir', dirs.proxy, '--listen', `/ip4/127.0.0.1/tcp/${port}`, ...common, ...settle]
    let proxy = start(proxyArgs)
    const worker = start(['node', '--role', 'worker', '--config', workerConfig, '--data-dir', dirs.worker, '--listen', '/ip4/127.0.0.1/tcp/0', ...common, ...settle])
    const client = start(['node', '--role', 'client', '--api-port', '0', '--data-dir', dirs.client, '--listen', '/ip4/127.0.0.1/tcp/0', ...common, ...settle])
    await nodeFile(dirs.proxy, proxy)
    await nodeFile(dirs.worker, worker)
    await nodeFile(dirs.client, client)
    const api = await cli.clientApi(dirs.client, client)

    // stream a long answer and kill -9 the proxy after some paid chunks
    const res = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'long' }], stream: true }) })
    expect(res.status).to.equal(200)
    const reader = (res.body as ReadableStream<Uint8Array>).getReader()
    let text = ''
    while (!/"content":"/.test(text) || text.split('"content":"').length < 60) {
      const { done, value } = await reader.read()
      if (done) break
      text += new TextDecoder().decode(value)
    }
    proxy.child.kill('SIGKILL')
    await proxy.exited
    let rest = ''
    while (true) {
      const { done, value } = await reader.read()
      if (done) break
      rest += new TextDecoder().decode(value)
    }
    expect(rest, 'the stream ends with an error event').to.match(/"error"/)

    const listed = async (dir: string): Promise<Array<{ address: string, side: string, cumulative: string | null, countersigned: string | null, seqno: string | null }>> =>
      JSON.parse((await cocoon(['channel', 'list', '--data-dir', dir, '--json'])).stdout)
    const [mine] = (await listed(dirs.client)).filter(c => c.side === 'payer')
    expect(BigInt(mine.countersigned ?? '0') > 0n, 'the proxy countersigned states mid-stream').to.equal(true)

    // restarted on the same address and data dir: every state it countersigned is there
    proxy = start(proxyArgs)
    await nodeFile(dirs.proxy, proxy)
    const theirs = (await listed(dirs.proxy)).find(c => c.address === mine.address)
    expect(theirs?.side).to.equal('payee')
    expect(BigInt(theirs?.cumulative ?? '0') >= BigInt(mine.countersigned ?? '0'), `the proxy holds ${theirs?.cumulative}, the client saw ${mine.countersigned} countersigned`).to.equal(true)

    // and the channel carries on
    let body: { cocoon?: { cost_nanoton?: { channel: string } } } = {}
    await waitFor(async () => {
      const r = await fetch(`${api}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'again' }], max_tokens: 3 }) })
      body = await r.json() as typeof body
      return r.ok
    }, 40_000, `a job through the restarted proxy; its output:\n${proxy.output()}`, 1_000)
    expect(body.cocoon?.cost_nanoton?.channel).to.equal(mine.address)
    const [after] = (await listed(dirs.client)).filter(c => c.side === 'payer')
    expect(BigInt(after.cumulative ?? '0') > BigInt(mine.cumulative ?? '0')).to.equal(true)
    expect(BigInt(after.seqno ?? '0') > BigInt(mine.seqno ?? '0')).to.equal(true)
  })
})

/**
 * Chaos under paid load, every node a process of its own on a shared devnet
 * (`cocoon chain`): a worker, the proxy and the client are each killed with
 * SIGKILL mid-stream and started again on their data dirs. After a quiet
 * period both ends of every channel hold the same latest state, signed by
 * both (seqno, amount and both signatures), and no money appeared or
 * vanished: what each payer signed is what its payee holds, and the proxy
 * lost at most one credit window to the client it lost mid-stream.
 *
 * `npm run test:chaos` runs this test alone.
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { equals } from 'uint8arrays/equals'
import { CHANNEL_STORE_FILE } from '../../src/settlement/node-settlement.js'
import { openChannelStore } from '../../src/settlement/store.js'
import { waitFor } from '../helpers.js'
import { CliSuite } from '../cli-harness.js'
import type { Started } from '../cli-harness.js'

/** The proxy's credit window to its client, nanoTON: what the client's death may cost it. */
const CREDIT = 20_000n

interface Listed { address: string, side: 'payer' | 'payee', peer?: string, cumulative: string | null, countersigned: string | null, seqno: string | null }

describe('chaos: kill -9 of a worker, the proxy and the client under paid load', function () {
  this.timeout(300_000)
  const cli = new CliSuite()
  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

  it('leaves both ends of every channel agreeing on the latest both-signed state, with no money made or lost beyond one window', async () => {
    const chain = cli.start(['chain', '--port', '0', '--data-dir', join(cli.home, 'chain')])
    let url = ''
    await waitFor(() => { url = /served on (http:\/\/127\.0\.0\.1:\d+)/.exec(chain.output())?.[1] ?? ''; return url !== '' }, 20_000, `cocoon chain to serve; its output:\n${chain.output()}`)
    const dirs = { boot: join(cli.home, 'boot'), proxy: join(cli.home, 'proxy'), w1: join(cli.home, 'w1'), w2: join(cli.home, 'w2'), client: join(cli.home, 'client') }
    const common = ['--no-default-bootstrap', '--log-level', 'warn', '--admin-port', '0', '--listen', '/ip4/127.0.0.1/tcp/0']
    const boot = cli.start(['node', '--role', 'bootstrap', '--data-dir', dirs.boot, ...common])
    const bootAddr = (await cli.nodeFile(dirs.boot, boot)).addrs[0]
    const settle = ['--settlement', '--chain-endpoint', url, '--bootstrap', bootAddr]
    const proxyConfig = join(cli.home, 'proxy.json')
    await writeFile(proxyConfig, JSON.stringify({ settlement: { creditWindow: Number(CREDIT) } }))
    // answers of about half a second, so every kill lands mid-stream
    const workerConfig = join(cli.home, 'worker.json')
    await writeFile(workerConfig, JSON.stringify({ worker: { backend: 'synthetic', synthetic: { chunks: 50, chunkBytes: 16, intervalMs: 10, firstChunkDelayMs: 0 } } }))
    const args = {
      proxy: ['node', '--role', 'proxy', '--config', proxyConfig, '--data-dir', dirs.proxy, ...common, ...settle],
      w1: ['node', '--role', 'worker', '--config', workerConfig, '--data-dir', dirs.w1, ...common, ...settle],
      w2: ['node', '--role', 'worker', '--config', workerConfig, '--data-dir', dirs.w2, ...common, ...settle],
      client: ['node', '--role', 'client', '--api-port', '0', '--data-dir', dirs.client, ...common, ...settle]
    }
    const procs: Record<'proxy' | 'w1' | 'w2' | 'client', Started> = {
      proxy: cli.start(args.proxy), w1: cli.start(args.w1), w2: cli.start(args.w2), client: cli.start(args.client)
    }
    for (const name of ['proxy', 'w1', 'w2', 'client'] as const) await cli.nodeFile(dirs[name], procs[name])
    let api = await cli.clientApi(dirs.client, procs.client)

    // paid load: three streams at a time, whatever fails
    let running = true
    const outcomes: Array<{ atMs: number, ok: boolean }> = []
    const t0 = Date.now()
    const streamOnce = async (): Promise<boolean> => {
      const res = await fetch(`${api}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'cocoon-synthetic', messages: [{ role: 'user', content: 'chaos' }], stream: true }),
        signal: AbortSignal.timeout(20_000)
      })
      if (!res.ok) return false
      const text = await res.text()
      return text.includes('[DONE]') && !text.includes('"error"')
    }
    const loaders = Array.from({ length: 3 }, async () => {
      while (running) {
        const ok = await streamOnce().catch(() => false)
        outcomes.push({ atMs: Date.now() - t0, ok })
        if (!ok) await sleep(200)
      }
    })
    const restart = async (name: 'proxy' | 'w1' | 'client', downMs: number): Promise<void> => {
      procs[name].child.kill('SIGKILL')
      await procs[name].exited
      await sleep(downMs)
      procs[name] = cli.start(args[name])
      await cli.nodeFile(dirs[name], procs[name])
    }

    await sleep(3_000)
    await restart('w1', 1_000)
    await sleep(3_000)
    await restart('proxy', 1_000)
    await sleep(4_000)
    await restart('client', 500)
    api = await cli.clientApi(dirs.client, procs.client, 60_000)
    const lastRestartMs = Date.now() - t0
    await waitFor(() => outcomes.some(o => o.ok && o.atMs > lastRestartMs), 40_000, 'a paid answer after the last restart')
    running = false
    await Promise.all(loaders)
    expect(outcomes.filter(o => o.ok).length, 'answers under chaos').to.be.above(5)

    // quiet: the ends re-send and countersign until they agree
    const listed = async (dir: string): Promise<Listed[]> => JSON.parse((await cli.run(['channel', 'list', '--data-dir', dir, '--json'], 60_000)).stdout) as Listed[]
    let view: Record<string, Listed[]> = {}
    const disagreements = (): string[] => {
      const all = Object.values(view).flat()
      const problems: string[] = []
      for (const payer of all.filter(c => c.side === 'payer')) {
        const payee = all.find(c => c.side === 'payee' && c.address === payer.address)
        if (payee == null) { problems.push(`${payer.address}: no payee end`); continue }
        if (payer.seqno !== payee.seqno || payer.cumulative !== payee.cumulative) problems.push(`${payer.address}: payer at ${payer.seqno}/${payer.cumulative}, payee at ${payee.seqno}/${payee.cumulative}`)
        if (payer.countersigned !== payer.cumulative || payee.countersigned !== payee.cumulative) problems.push(`${payer.address}: latest not signed by both (${payer.countersigned} / ${payee.countersigned} of ${payer.cumulative})`)
      }
      return problems
    }
    await waitFor(async () => {
      view = Object.fromEntries(await Promise.all(Object.entries(dirs).filter(([n]) => n !== 'boot').map(async ([n, d]) => [n, await listed(d)] as const)))
      return disagreements().length === 0
    }, 90_000, 'both ends of every channel to agree', 2_000).catch(err => { throw new Error(`${(err as Error).message}: ${disagreements().join('; ')}`) })

    // stopped cleanly, the stores themselves: the same state and the same two signatures at both ends
    for (const p of Object.values(procs)) p.child.kill('SIGTERM')
    await Promise.all(Object.values(procs).map(async p => await p.exited))
    const stores = Object.fromEntries(Object.entries(dirs).filter(([n]) => n !== 'boot').map(([n, d]) => [n, openChannelStore(join(d, CHANNEL_STORE_FILE))]))
    try {
      let channels = 0
      for (const payerStore of Object.values(stores)) {
        for (const record of payerStore.listChannels({ side: 'payer' })) {
          const payeeStore = Object.values(stores).find(s => s.getChannel(record.address)?.side === 'payee')
          const mine = payerStore.latestBothSigned(record.address)
          const theirs = payeeStore?.latestBothSigned(record.address)
          expect(theirs?.seqno, record.address).to.equal(mine?.seqno)
          expect(theirs?.cumulative, record.address).to.equal(mine?.cumulative)
          expect(mine != null && theirs != null && equals(mine.payerSignature, theirs.payerSignature) && mine.payeeSignature != null && theirs.payeeSignature != null && equals(mine.payeeSignature, theirs.payeeSignature), `${record.address}: the same two signatures at both ends`).to.equal(true)
          channels++
        }
      }
      expect(channels, 'a client and two worker channels at least').to.be.at.least(3)
      // money: the proxy took from its client and paid its workers; it kept its commission and lost at most one window
      const sum = (name: string, side: 'payer' | 'payee'): bigint => stores[name].listChannels({ side }).reduce((n, c) => n + (stores[name].latestBothSigned(c.address)?.cumulative ?? 0n), 0n)
      const clientPaid = sum('client', 'payer')
      const proxyReceived = sum('proxy', 'payee')
      const proxyPaid = sum('proxy', 'payer')
      const workersReceived = sum('w1', 'payee') + sum('w2', 'payee')
      expect(proxyReceived, 'what the client paid is what the proxy holds').to.equal(clientPaid)
      expect(workersReceived, 'what the proxy paid is what the workers hold').to.equal(proxyPaid)
      const kept = proxyReceived - proxyPaid
      console.log(`      chaos: ${outcomes.filter(o => o.ok).length}/${outcomes.length} answers; client paid ${clientPaid}, workers received ${workersReceived}, the proxy kept ${kept} nanoTON`)
      expect(kept >= -CREDIT, `the proxy lost ${-kept} nanoTON, more than one credit window`).to.equal(true)
    } finally {
      for (const s of Object.values(stores)) s.close()
    }
  })
})

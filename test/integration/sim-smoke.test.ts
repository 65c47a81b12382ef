/**
 * The simulator end to end: `npm run sim -- smoke` (as its CLI, in a child
 * process) starts ten real nodes on two host processes with paid load on a
 * devnet chain, and must hold its invariants and write its reports.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { packageRoot } from '../../src/package-info.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { SimResult } from '../../simulations/report/types.js'

async function sim (args: string[], timeoutMs: number): Promise<{ code: number | null, output: string }> {
  const child = spawn(process.execPath, [join(packageRoot(), 'dist', 'simulations', 'cli.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d: Buffer) => { output += d.toString() })
  child.stderr.on('data', (d: Buffer) => { output += d.toString() })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, timeoutMs)
  const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
  clearTimeout(timer)
  return { code, output }
}

describe('the network simulator', function () {
  this.timeout(120_000)
  after(cleanupTempDirs)

  it('runs the smoke scenario: every request answered and paid, money conserved, reports written', async () => {
    const out = await tempDir()
    const { code, output } = await sim(['smoke', '--out', out], 110_000)
    expect(code, output).to.equal(0)
    // progress while it runs, never silence
    expect(output.match(/^\s+\[\d+\.\d s\]/gm)?.length ?? 0).to.be.at.least(5)
    const result = JSON.parse(await readFile(join(out, 'result.json'), 'utf8')) as SimResult
    expect(result).to.include({ scenario: 'smoke', nodes: 10, ok: true, money_conserved: true })
    expect(result.processes).to.equal(2)
    expect(result.jobs.total).to.be.at.least(20)
    expect(result.success_rate).to.be.at.least(0.98)
    expect(result.ttft_p50_ms).to.be.a('number')
    expect(BigInt(result.money.clients_paid) > 0n, 'clients paid something').to.equal(true)
    expect(BigInt(result.money.clients_paid)).to.equal(BigInt(result.money.workers_earned) + BigInt(result.money.proxies_kept))
    expect(BigInt(result.money.proxies_kept) > 0n, 'proxies kept a commission').to.equal(true)
    expect(result.gossip.delivery_ratio).to.equal(1)
    expect(result.rss_per_node_mib).to.be.above(0)
    expect(result.event_loop_lag_p99_ms).to.be.above(0)
    expect(await readFile(join(out, 'report.html'), 'utf8')).to.include('data-chart="latency"')
    expect(await readFile(join(out, 'summary.txt'), 'utf8')).to.include('smoke')
  })

  it('refuses a scenario that breaks its schema, naming the key, with exit code 2', async () => {
    const dir = await tempDir()
    const path = join(dir, 'bad.json')
    await import('node:fs/promises').then(async fs => { await fs.writeFile(path, JSON.stringify({ name: 'bad', durationMs: 1000, nodes: { proxy: 1, worker: -1, client: 1 }, load: { ratePerClient: 1 } })) })
    const { code, output } = await sim([path], 20_000)
    expect(code).to.equal(2)
    expect(output).to.match(/nodes\.worker/)
    const missing = await sim(['no-such-scenario'], 20_000)
    expect(missing.code).to.equal(2)
    expect(missing.output).to.match(/no scenario "no-such-scenario"/)
  })
})

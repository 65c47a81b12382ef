import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { expect } from 'chai'
import { chromium } from 'playwright-core'
import { renderHtmlReport } from '../../simulations/report/html.js'
import type { BrowserContext, Page } from 'playwright-core'
import type { SimResult, SimSeriesPoint } from '../../simulations/report/types.js'

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
// from dist/test/integration/ back to the repository root
const RESULTS_DIR = fileURLToPath(new URL('../../../simulations/results/', import.meta.url))
const SCREENSHOT = join(RESULTS_DIR, 'report-screenshot.png')
const CHARTS = ['latency', 'success', 'earnings', 'gossip'] as const
const STEP_TIMEOUT_MS = 15_000
const LAUNCH_TIMEOUT_MS = 40_000

/** A 3-minute churn run with a partition: enough data that every chart has something to draw. */
function fixture (): SimResult {
  const series: SimSeriesPoint[] = Array.from({ length: 36 }, (_, i) => {
    const t = i * 5000
    const partitioned = t >= 60_000 && t < 80_000
    const jobs = 30 + (i % 5)
    const failed = partitioned ? 5 + (i % 3) : i % 9 === 0 ? 1 : 0
    return {
      t_ms: t,
      jobs,
      ok: jobs - failed,
      failed,
      success_rate: (jobs - failed) / jobs,
      ttft_p50_ms: 200 + (partitioned ? 300 : 0) + (i % 4) * 15,
      ttft_p99_ms: 600 + (partitioned ? 1100 : 0) + (i % 3) * 40,
      latency_p50_ms: 1500 + (partitioned ? 700 : 0) + (i % 4) * 30,
      latency_p99_ms: 3300 + (partitioned ? 2400 : 0) + (i % 5) * 80,
      event_loop_lag_p99_ms: 9 + (i % 4)
    }
  })
  const worker = (i: number, adversary = false): SimResult['earnings'][number] =>
    ({ peer: `12D3KooWWorker${i}AbCdEfGhIjKlMnOpQrStUv${i}`, role: 'worker', nanoton: String(30_000_000 + ((i * 7919) % 25) * 1_000_000), adversary })
  return {
    scenario: 'partition-heal',
    seed: 7,
    nodes: 26,
    roles: { bootstrap: 2, proxy: 3, worker: 16, client: 5 },
    processes: 4,
    duration_ms: 180_000,
    ok: true,
    violations: [],
    success_rate: 0.964,
    jobs: { total: 1152, ok: 1110, failed: 42, failovers: 17 },
    ttft_p50_ms: 215,
    ttft_p99_ms: 1610,
    latency_p50_ms: 1540,
    latency_p99_ms: 5610,
    money_conserved: true,
    money: { clients_paid: '1250000000', workers_earned: '1150000000', proxies_kept: '100000000' },
    rss_per_node_mib: 91.3,
    event_loop_lag_p99_ms: 12.4,
    cpu_ms_per_node_s: 1.8,
    gc_max_pause_ms: 14,
    gossip: { delivery_ratio: 0.997, latency_p50_ms: 48, latency_p99_ms: 290, samples: 600 },
    dht: { lookup_p50_ms: 31, lookup_p99_ms: 240, samples: 150 },
    gossip_propagation_ms: Array.from({ length: 600 }, (_, i) => Math.round(15 + 300 * (i / 600) ** 3 + (i % 11))),
    series,
    events: [
      { t_ms: 25_000, kind: 'adversary', detail: '12D3KooW<script>alert(1)</script> begins forging attestations' },
      { t_ms: 60_000, kind: 'partition', detail: 'clients cut from half the workers' },
      { t_ms: 64_000, kind: 'worker_crash', detail: '2 workers killed' },
      { t_ms: 80_000, kind: 'heal', detail: 'partition healed' },
      { t_ms: 120_000, kind: 'worker_join', detail: '2 workers joined' },
      { t_ms: 172_000, kind: 'slow_worker', detail: 'one worker at 10 % speed' }
    ],
    earnings: [
      ...Array.from({ length: 15 }, (_, i) => worker(i)),
      { peer: '12D3KooW<script>alert(1)</script>', role: 'worker', nanoton: '2000000', adversary: true },
      ...Array.from({ length: 3 }, (_, i) => ({ peer: `12D3KooWProxy${i}XyZxYzXyZxYzXyZ${i}`, role: 'proxy' as const, nanoton: String(30_000_000 + i * 5_000_000), adversary: false })),
      ...Array.from({ length: 5 }, (_, i) => ({ peer: `12D3KooWClient${i}QwErTyQwErTy${i}`, role: 'client' as const, nanoton: String(230_000_000 + i * 5_000_000), adversary: false }))
    ],
    adversaries: [
      { kind: 'forged_attestation', peer: '12D3KooW<script>alert(1)</script>', gained_nanoton: '2000000', bound_nanoton: '5000000', shunned_after_ms: 3100, detail: 'quote signed by an unknown key' }
    ],
    worker_utilisation: 0.58
  }
}

describe('simulation report in a real browser', function () {
  this.timeout(90_000)
  let profile: string | undefined
  let context: BrowserContext | undefined

  before(() => {
    if (!existsSync(CHROMIUM_PATH)) {
      throw new Error(`Chromium not found at ${CHROMIUM_PATH}: run scripts/install-chromium.sh (or set CHROMIUM_PATH to a Chromium binary)`)
    }
  })

  after(async () => {
    await context?.close().catch(() => {})
    if (profile != null) await rm(profile, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 })
  })

  it('renders all four charts, screenshots the page and makes no network request', async () => {
    profile = await mkdtemp(join(tmpdir(), 'cocoon-report-'))
    const page = join(profile, 'report.html')
    await writeFile(page, renderHtmlReport(fixture()))
    const pageUrl = pathToFileURL(page).href

    context = await chromium.launchPersistentContext(join(profile, 'user-data'), {
      executablePath: CHROMIUM_PATH,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      // a cold Chromium start on a loaded 2-core machine has taken over 15 s
      timeout: LAUNCH_TIMEOUT_MS,
      viewport: { width: 1280, height: 900 }
    })
    context.setDefaultTimeout(STEP_TIMEOUT_MS)
    const requests: string[] = []
    context.on('request', request => { requests.push(request.url()) })
    const tab: Page = context.pages()[0] ?? await context.newPage()
    await tab.goto(pageUrl, { waitUntil: 'load', timeout: STEP_TIMEOUT_MS })

    await mkdir(RESULTS_DIR, { recursive: true })
    await tab.screenshot({ path: SCREENSHOT, fullPage: true, timeout: STEP_TIMEOUT_MS })

    for (const name of CHARTS) {
      const svg = tab.locator(`svg[data-chart="${name}"]`)
      expect(await svg.count(), `svg[data-chart=${name}]`).to.equal(1)
      const box = await svg.boundingBox({ timeout: STEP_TIMEOUT_MS })
      expect(box, `${name} chart box`).to.not.equal(null)
      expect(box!.width, `${name} chart width`).to.be.greaterThan(0)
      expect(box!.height, `${name} chart height`).to.be.greaterThan(0)
      expect(await svg.getAttribute('role')).to.equal('img')
      expect(await svg.getAttribute('aria-label')).to.not.equal(null)
      // a series drawn with a visible extent: a bare path or a zero-width bar would be 0 × 0
      const drawn = await svg.locator('.series').evaluateAll(nodes => nodes
        .map(node => node.getBoundingClientRect())
        .filter(rect => rect.width > 0 && rect.height > 0).length)
      expect(drawn, `${name}: .series elements with a nonzero box`).to.be.greaterThan(0)
    }

    // the hostile peer id was escaped: it shows as text and no script element exists
    expect(await tab.locator('script').count()).to.equal(0)
    expect(await tab.getByText('12D3KooW<script>alert(1)</script> begins forging attestations', { exact: true }).count()).to.equal(1)

    expect(requests, 'requests besides the report file').to.deep.equal([pageUrl])
  })
})

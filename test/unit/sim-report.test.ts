import { expect } from 'chai'
import { renderHtmlReport } from '../../simulations/report/html.js'
import { renderTextSummary, SUMMARY_MAX_COLUMNS, SUMMARY_MAX_LINES } from '../../simulations/report/summary.js'
import type { SimEarning, SimResult, SimSeriesPoint } from '../../simulations/report/types.js'

const EVIL_PEER = '12D3KooW<script>alert("x")</script>Evil'

/** A worker-churn run: a crash dip mid-run, one adversary with a hostile peer id, a failed invariant. */
function fixture (): SimResult {
  const series: SimSeriesPoint[] = []
  for (let i = 0; i < 24; i++) {
    const t = i * 5000
    const dip = t >= 30_000 && t < 45_000
    const jobs = i === 23 ? 0 : 40
    const failed = jobs === 0 ? 0 : dip ? 6 : i % 7 === 0 ? 1 : 0
    const ok = jobs - failed
    series.push({
      t_ms: t,
      jobs,
      ok,
      failed,
      success_rate: jobs === 0 ? 1 : ok / jobs,
      ttft_p50_ms: jobs === 0 ? null : 180 + (dip ? 240 : 0) + (i % 3) * 10,
      ttft_p99_ms: jobs === 0 ? null : 520 + (dip ? 900 : 0),
      latency_p50_ms: jobs === 0 ? null : 1400 + (dip ? 600 : 0),
      latency_p99_ms: jobs === 0 ? null : 3200 + (dip ? 2100 : 0),
      event_loop_lag_p99_ms: 8 + (i % 4)
    })
  }
  const earnings: SimEarning[] = [
    ...Array.from({ length: 12 }, (_, i): SimEarning => ({ peer: `12D3KooWorker${String(i).padStart(2, '0')}xxxxxxxxxxxxxxxxxxxx`, role: 'worker', nanoton: String(40_000_000 + i * 3_100_000), adversary: false })),
    { peer: EVIL_PEER, role: 'worker', nanoton: '1500000', adversary: true },
    ...Array.from({ length: 3 }, (_, i): SimEarning => ({ peer: `12D3KooWProxy${i}yyyyyyyyyyyyyyyyyyyyyy`, role: 'proxy', nanoton: String(9_000_000 + i * 1_000_000), adversary: false })),
    ...Array.from({ length: 4 }, (_, i): SimEarning => ({ peer: `12D3KooWClient${i}zzzzzzzzzzzzzzzzzzzzz`, role: 'client', nanoton: String(180_000_000 + i * 5_000_000), adversary: false }))
  ]
  return {
    scenario: 'worker-churn',
    seed: 42,
    nodes: 22,
    roles: { bootstrap: 2, proxy: 3, worker: 13, client: 4 },
    processes: 3,
    duration_ms: 120_000,
    ok: false,
    violations: ['p99 latency 5.30 s above the 5 s bound during <partition>'],
    success_rate: 0.9713,
    jobs: { total: 920, ok: 893, failed: 27, failovers: 9 },
    ttft_p50_ms: 190,
    ttft_p99_ms: 1350,
    latency_p50_ms: 1450,
    latency_p99_ms: 5300,
    money_conserved: true,
    money: { clients_paid: '750000000', workers_earned: '693600000', proxies_kept: '56400000' },
    rss_per_node_mib: 84.6,
    event_loop_lag_p99_ms: 11,
    cpu_ms_per_node_s: 2.25,
    gc_max_pause_ms: 9,
    gossip: { delivery_ratio: 0.998, latency_p50_ms: 42, latency_p99_ms: 310, samples: 400 },
    dht: { lookup_p50_ms: 35, lookup_p99_ms: 220, samples: 120 },
    gossip_propagation_ms: Array.from({ length: 400 }, (_, i) => 10 + (i * 37) % 300),
    series,
    events: [
      { t_ms: 20_000, kind: 'adversary', detail: `${EVIL_PEER} starts overstating usage` },
      { t_ms: 30_000, kind: 'worker_crash', detail: 'kills 3 workers & their slots' },
      { t_ms: 31_000, kind: 'proxy_crash', detail: 'proxy 1' },
      { t_ms: 60_000, kind: 'partition', detail: 'clients | workers' },
      { t_ms: 75_000, kind: 'heal', detail: 'partition healed' },
      { t_ms: 90_000, kind: 'worker_join', detail: '3 fresh workers' }
    ],
    earnings,
    adversaries: [
      { kind: 'overstated_usage', peer: EVIL_PEER, gained_nanoton: '1500000', bound_nanoton: '2000000', shunned_after_ms: 4200, detail: 'claimed 2× tokens' },
      { kind: 'forged_attestation', peer: '12D3KooWForgerqqqqqqqqqqqqqqqqqqqq', gained_nanoton: '0', bound_nanoton: '0', shunned_after_ms: null, detail: 'never admitted' }
    ],
    worker_utilisation: 0.63
  }
}

function empty (): SimResult {
  return {
    scenario: 'empty',
    seed: 0,
    nodes: 0,
    roles: { bootstrap: 0, proxy: 0, worker: 0, client: 0 },
    processes: 0,
    duration_ms: 0,
    ok: true,
    violations: [],
    success_rate: 1,
    jobs: { total: 0, ok: 0, failed: 0, failovers: 0 },
    ttft_p50_ms: null,
    ttft_p99_ms: null,
    latency_p50_ms: null,
    latency_p99_ms: null,
    money_conserved: true,
    money: { clients_paid: '0', workers_earned: '0', proxies_kept: '0' },
    rss_per_node_mib: 0,
    event_loop_lag_p99_ms: 0,
    cpu_ms_per_node_s: null,
    gc_max_pause_ms: 0,
    gossip: { delivery_ratio: 0, latency_p50_ms: null, latency_p99_ms: null, samples: 0 },
    dht: { lookup_p50_ms: null, lookup_p99_ms: null, samples: 0 },
    gossip_propagation_ms: [],
    series: [],
    events: [],
    earnings: [],
    adversaries: [],
    worker_utilisation: 0
  }
}

const CHARTS = ['latency', 'success', 'earnings', 'gossip']

/** The opening tag and body of one chart's <svg>. */
function chart (html: string, name: string): string {
  const match = html.match(new RegExp(`<svg[^>]*data-chart="${name}"[^>]*>[\\s\\S]*?</svg>`))
  expect(match, `chart ${name}`).to.not.equal(null)
  return match![0]
}

/** Every numeric SVG attribute value, to check none is NaN, Infinity or empty. */
function svgNumbers (svg: string): string[] {
  return [...svg.matchAll(/\s(?:x|y|x1|x2|y1|y2|cx|cy|r|width|height)="([^"]*)"/g)].map(m => m[1])
}

describe('simulation report: HTML', () => {
  it('renders a self-contained page: no scripts, external resources or NaN', () => {
    for (const result of [fixture(), empty()]) {
      const html = renderHtmlReport(result)
      expect(html.startsWith('<!doctype html>')).to.equal(true)
      expect(html).to.not.match(/<script/i)
      expect(html).to.not.match(/<link|@import|url\(|src=/i)
      expect(html).to.not.match(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/)
      expect(html).to.not.include('NaN')
      expect(html).to.not.include('undefined')
      expect(html).to.not.include('Infinity')
      expect(html).to.not.include('null')
    }
  })

  it('escapes strings from the result (peer ids, event details, violations)', () => {
    const html = renderHtmlReport(fixture())
    expect(html).to.not.include('<script')
    expect(html).to.include('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;Evil')
    expect(html).to.include('kills 3 workers &amp; their slots')
    expect(html).to.include('during &lt;partition&gt;')
  })

  it('draws the four charts accessibly, with data series and event markers', () => {
    const html = renderHtmlReport(fixture())
    for (const name of CHARTS) {
      const svg = chart(html, name)
      expect(svg).to.match(/^<svg role="img" aria-label="[^"]+"/)
      expect(svg).to.match(/class="series"/)
      for (const value of svgNumbers(svg)) expect(Number.isFinite(Number(value)), `${name}: ${value}`).to.equal(true)
    }
    // four percentile lines; the empty last bucket is a gap, not a zero
    expect(chart(html, 'latency').match(/<path class="series"/g)).to.have.length(4)
    for (const name of ['latency', 'success']) {
      expect(chart(html, name).match(/<g class="event">/g)).to.have.length(6)
      expect(chart(html, name)).to.include('worker_crash')
    }
    // one bar per node, the adversary's highlighted
    const earnings = chart(html, 'earnings')
    expect(earnings.match(/<rect class="series"/g)).to.have.length(fixture().earnings.length)
    expect(earnings.match(/class="adversary"/g)).to.have.length(1)
  })

  it('shows the verdict, violations, headline figures and both tables', () => {
    const html = renderHtmlReport(fixture())
    expect(html).to.include('class="badge failed"')
    expect(html).to.include('worker-churn')
    expect(html).to.include('97.1 %')
    expect(html).to.include('0.75 TON')
    expect(html).to.include('0.6936 TON')
    expect(html).to.include('0.0564 TON')
    expect(html).to.match(/overstated_(<wbr>)?usage/)
    expect(html).to.include('4.20 s')
    expect(html).to.include('never')
    expect(html).to.include('3 fresh workers')
    expect(renderHtmlReport({ ...fixture(), ok: true, violations: [] })).to.include('class="badge ok"')
  })

  it('draws axes with a "no data" note for an empty result', () => {
    const html = renderHtmlReport(empty())
    for (const name of CHARTS) {
      const svg = chart(html, name)
      expect(svg).to.include('no data')
      expect(svg).to.not.include('class="series"')
      for (const value of svgNumbers(svg)) expect(Number.isFinite(Number(value)), `${name}: ${value}`).to.equal(true)
    }
    expect(html).to.include('No adversaries')
    expect(html).to.include('No scenario events')
  })

  it('survives junk numbers and amounts without NaN in the page', () => {
    const result = fixture()
    result.series[3].latency_p99_ms = Number.NaN
    result.series[4].t_ms = Number.POSITIVE_INFINITY
    result.gossip_propagation_ms.push(Number.NaN, -5)
    result.earnings.push({ peer: 'bad', role: 'worker', nanoton: 'lots', adversary: false })
    result.events.push({ t_ms: Number.NaN, kind: 'heal', detail: 'no time' })
    const html = renderHtmlReport(result)
    expect(html).to.not.include('NaN')
    expect(html).to.not.include('Infinity')
  })
})

describe('simulation report: text summary', () => {
  it('fits one screen and says the verdict first', () => {
    for (const result of [fixture(), empty()]) {
      const text = renderTextSummary(result)
      const lines = text.trimEnd().split('\n')
      expect(lines.length).to.be.at.most(SUMMARY_MAX_LINES)
      for (const line of lines) expect(line.length, line).to.be.at.most(SUMMARY_MAX_COLUMNS)
      expect(text).to.not.include('NaN')
      expect(text).to.not.include('undefined')
    }
    expect(renderTextSummary(fixture()).split('\n')[0]).to.match(/worker-churn.*seed 42.*FAILED \(1 violation\)/)
    expect(renderTextSummary(empty()).split('\n')[0]).to.match(/OK$/)
  })

  it('has every section: nodes, jobs, percentiles, money, memory, gossip, DHT, adversaries, violations', () => {
    const text = renderTextSummary(fixture())
    expect(text).to.match(/Nodes\s+22 in 3 processes: 2 bootstrap, 3 proxy, 13 worker, 4 client/)
    expect(text).to.match(/Jobs\s+920 total, 893 ok, 27 failed, 9 failovers; success 97.1 %/)
    expect(text).to.match(/TTFT\s+p50 190 ms, p99 1.35 s/)
    expect(text).to.match(/Latency\s+p50 1.45 s, p99 5.30 s/)
    expect(text).to.match(/Money\s+conserved: clients paid 0.75 TON, workers earned 0.6936 TON, proxies kept 0.0564 TON/)
    expect(text).to.match(/84.6 MiB RSS per node; event-loop lag p99 11 ms/)
    expect(text).to.match(/CPU\s+2.25 ms per node per second during the load; longest GC pause 9.0 ms/)
    expect(text).to.match(/Gossip\s+delivery 99.80 % of 400 samples/)
    expect(text).to.match(/DHT\s+lookup p50 35 ms, p99 220 ms/)
    expect(text).to.match(/overstated_usage 12D3KooW<s…t>Evil: gained 0.0015 TON of 0.002 TON bound; shunned after 4.20 s/)
    expect(text).to.match(/forged_attestation .*shunned never/)
    expect(text).to.include('  - p99 latency 5.30 s above the 5 s bound during <partition>')
  })

  it('keeps to the line budget with many adversaries and violations, and flattens newlines', () => {
    const result = fixture()
    result.violations = Array.from({ length: 40 }, (_, i) => `violation ${i}\nsecond line ${'x'.repeat(120)}`)
    result.adversaries = Array.from({ length: 40 }, (_, i) => ({ ...result.adversaries[0], peer: `peer-${i}` }))
    const lines = renderTextSummary(result).trimEnd().split('\n')
    expect(lines.length).to.equal(SUMMARY_MAX_LINES)
    for (const line of lines) expect(line.length).to.be.at.most(SUMMARY_MAX_COLUMNS)
    expect(lines.some(l => /… and \d+ more/.test(l))).to.equal(true)
    expect(lines.filter(l => l.startsWith('  - violation')).length).to.be.greaterThan(10)
  })
})

import { expect } from 'chai'
import {
  bootstrapFor, capacityBytesPerProxy, capacityIntervalMs, capacityPerProxy, dhtHops, measuredPoints, measuredRun,
  presenceBytesPerNode, presenceIntervalMs, presencePerNode, proxiesFor, proxyConnections, renderMeasuredTable,
  renderModelTable, renderScalingSvg, sampleWorkers, scalingCurves, scalingRow, TABLE_SIZES, workerConnections
} from '../../simulations/scaling.js'
import type { Curve, MeasuredPoint } from '../../simulations/scaling.js'

function count (text: string, pattern: RegExp): number {
  return text.match(pattern)?.length ?? 0
}

describe('simulator scaling arithmetic', () => {
  it('presence: (B + P) / T_p, T_p = clamp(30 s, 1 s × (B + P), 6 h)', () => {
    expect(presenceIntervalMs(1000, 8)).to.equal(1_008_000)
    expect(presencePerNode(1000, 8)).to.be.closeTo(1.0, 1e-9)
    expect(presenceBytesPerNode(1000, 8)).to.be.closeTo(4 * 150, 1e-9)
    // small swarm: the 30 s floor
    expect(presenceIntervalMs(1, 1)).to.equal(30_000)
    expect(presencePerNode(1, 1)).to.be.closeTo(2 / 30, 1e-9)
    expect(presencePerNode(100, 1)).to.be.closeTo(1.0, 1e-9)
    // huge swarm: the 6 h ceiling, so the rate grows again
    expect(presenceIntervalMs(30_000, 0)).to.equal(6 * 3600_000)
    expect(presencePerNode(30_000, 0)).to.be.closeTo(30_000 / 21_600, 1e-9)
  })

  it('capacity: W / T_c, T_c = clamp(5 s, 0.25 s × W, 600 s), one shard 1/16', () => {
    expect(capacityIntervalMs(100_000)).to.equal(600_000)
    expect(capacityPerProxy(100_000)).to.be.closeTo(166.67, 0.01)
    expect(capacityPerProxy(100_000, 1)).to.be.closeTo(10.42, 0.01)
    expect(capacityBytesPerProxy(100_000)).to.be.closeTo(420 * 100_000 / 600, 1e-6)
    expect(capacityPerProxy(20)).to.be.closeTo(4, 1e-9)
    expect(capacityPerProxy(2_400)).to.be.closeTo(4, 1e-9)
    expect(capacityPerProxy(1_000)).to.be.closeTo(4, 1e-9)
    expect(capacityPerProxy(10)).to.be.closeTo(2, 1e-9) // below 20 workers the 5 s floor
  })

  it('DHT hops and connections', () => {
    expect(dhtHops(1000, 8)).to.equal(10)
    expect(dhtHops(1, 1)).to.equal(1)
    expect(dhtHops(10, 1)).to.equal(4)
    expect(workerConnections(1000, 8)).to.equal(1 + 3 + 20)
    expect(workerConnections(1, 1)).to.equal(1 + 3 + 2)
    expect(proxyConnections(100_000, 1000, 8)).to.equal(300 + 20)
    expect(proxyConnections(100_000, 10, 1)).to.equal(1000) // capped
  })

  it('extrapolates P = W / 100 and B from 1 to 8', () => {
    expect(proxiesFor(10)).to.equal(1)
    expect(proxiesFor(100_000)).to.equal(1000)
    expect(bootstrapFor(1)).to.equal(1)
    expect(bootstrapFor(100)).to.equal(1)
    expect(bootstrapFor(1000)).to.equal(8)
    const row = scalingRow(100_000)
    expect(row).to.include({ workers: 100_000, proxies: 1000, bootstrap: 8, presence_interval_s: 1008, capacity_interval_s: 600, dht_hops: 10, worker_connections: 24 })
    expect(row.presence_msgs_per_s).to.be.closeTo(1, 1e-9)
    expect(row.capacity_msgs_per_s_one_shard).to.be.closeTo(100_000 / 600 / 16, 1e-9)
  })

  it('samples the curves log-spaced from 10 to 100 000 with the corners exact', () => {
    const xs = sampleWorkers()
    expect(xs[0]).to.equal(10)
    expect(xs[xs.length - 1]).to.equal(100_000)
    expect(xs).to.include.members([20, 2_400])
    expect([...xs].sort((a, b) => a - b)).to.deep.equal(xs)
    const curves = scalingCurves(xs)
    expect(curves.map(c => c.key)).to.deep.equal(['presence', 'capacity', 'capacity_shard'])
    const capacity = curves[1].points
    expect(capacity.find(([w]) => w === 2_400)?.[1]).to.be.closeTo(4, 1e-9)
  })

  it('reads a result.json defensively', () => {
    const run = measuredRun({
      scenario: 'steady',
      nodes: 100,
      roles: { bootstrap: 1, proxy: 6, worker: 80, client: 13 },
      gossip_per_node: {
        'proxy capacity': { messages_per_s: 30, bytes_per_s: 10_000 },
        'worker presence': { messages_per_s: 2, bytes_per_s: 160 },
        'proxy presence': { messages_per_s: 3, bytes_per_s: 240 }
      },
      rss_per_node_mib: 11,
      event_loop_lag_p99_ms: 199,
      dht: { lookup_p50_ms: 185, lookup_p99_ms: 427, samples: 13 },
      formed_ms: 53_000
    })
    expect(run).to.deep.include({ scenario: 'steady', workers: 80, proxies: 6, presence_msgs_per_s: 2.5, capacity_msgs_per_s: 30, dht_lookup_p50_ms: 185, formed_ms: 53_000 })
    const bare = measuredRun({ scenario: 'old', nodes: 3, roles: { bootstrap: 1, proxy: 1, worker: 1, client: 0 } })
    expect(bare).to.deep.include({ presence_msgs_per_s: null, capacity_msgs_per_s: null, formed_ms: null })
    expect(measuredRun({ scenario: 'broken' })).to.equal(null)
    expect(measuredRun('nonsense')).to.equal(null)
    expect(measuredPoints(run == null ? [] : [run, ...(bare == null ? [] : [bare])]).map(p => p.curve)).to.deep.equal(['presence', 'capacity'])
  })

  it('renders the tables', () => {
    const model = renderModelTable(TABLE_SIZES.map(w => scalingRow(w)))
    expect(model).to.match(/heartbeats only/)
    expect(model).to.match(/^ *100,000 +1,000 +8 /m)
    expect(renderMeasuredTable([])).to.match(/no results/)
    const run = measuredRun({ scenario: 'smoke', nodes: 10, roles: { bootstrap: 1, proxy: 2, worker: 4, client: 3 }, formed_ms: 9962 })
    const measured = renderMeasuredTable(run == null ? [] : [run])
    expect(measured).to.match(/probe/)
    expect(measured).to.match(/^smoke +10 +4 +2 /m)
  })

  it('renders a self-contained SVG: one path per curve, one marker per measured point', () => {
    const curves: Curve[] = [
      { key: 'presence', name: 'presence <per> node', color: '#2563eb', points: [[10, 0.1], [1000, 0.4], [100_000, 1]] },
      { key: 'capacity', name: 'capacity', color: '#c2410c', points: [[10, 2], [100_000, 166]] },
      { key: 'capacity_shard', name: 'one shard', color: '#c2410c', dash: '6 4', points: [[10, 0.125], [100_000, 10.4]] }
    ]
    const points: MeasuredPoint[] = [
      { curve: 'presence', label: 'smoke & co', workers: 4, value: 0.97 },
      { curve: 'presence', label: 'steady', workers: 80, value: 2.4 },
      { curve: 'capacity', label: 'steady', workers: 80, value: 30.6 }
    ]
    const svg = renderScalingSvg({ curves, points, notes: ['a note'] })
    expect(svg.startsWith('<svg')).to.equal(true)
    expect(svg).to.include('xmlns="http://www.w3.org/2000/svg"')
    expect(count(svg, /<path class="curve"/g)).to.equal(3)
    expect(count(svg, /class="point"/g)).to.equal(3)
    expect(svg).to.include('presence &lt;per&gt; node')
    expect(svg).to.include('smoke &amp; co')
    expect(svg).to.not.match(/<script|href=|url\(|NaN|Infinity/)
    // log axes reach down to the decade under the smallest worker count
    expect(svg).to.match(/>1<\/text>/)
    expect(svg).to.match(/>100k<\/text>/)

    const empty = renderScalingSvg({ curves, points: [] })
    expect(count(empty, /class="point"/g)).to.equal(0)
    expect(empty).to.include('no runs found')
  })
})

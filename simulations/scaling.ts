/**
 * `node dist/simulations/scaling.js [--results DIR] [--svg FILE] [--json FILE]`:
 * the scaling arithmetic of the swarm (gossip each node receives, DHT hops,
 * connections) from 10 to 100 000 workers, as a text table on stdout, a
 * self-contained SVG chart (simulations/scaling.svg: log-log, no scripts, no
 * outside resources) and simulations/results/scaling.json, with the
 * simulator's measured runs (simulations/results/<scenario>/result.json)
 * overlaid.
 *
 * The model, per node and per second, for W workers, P proxies and B
 * bootstrap nodes (the design extrapolates to P = W / 100):
 * - presence: only bootstrap nodes and proxies publish, each every
 *   T_p = clamp(30 s, 1 s × (B + P), 6 h); every node that takes presence
 *   (bootstrap nodes, proxies, clients; workers take none) receives every one:
 *   (B + P) / T_p messages a second, each ~150 B, from about D = 4 mesh peers;
 * - capacity: each worker heartbeats every T_c = clamp(5 s, 0.25 s × W, 600 s),
 *   ~420 B; a proxy routing every model receives W / T_c a second, one routing
 *   one of the 16 capacity shards 1/16 of that (load changes come on top);
 * - DHT: B + P servers, about log2(B + P) hops a lookup (an upper bound);
 * - connections per worker: 1 bootstrap + 3 proxy links + the DHT servers its
 *   provide touches (at most 20), capped at 100; per proxy: about 3W/P worker
 *   links + the DHT, capped at 1 000.
 * Every function below is pure, so the unit test checks them and the renderer.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import {
  CAPACITY_INTERVAL_MS, CAPACITY_PER_WORKER_MS, CAPACITY_SHARDS, MAX_CONNECTIONS_BY_ROLE,
  PRESENCE_INTERVAL_MS, PRESENCE_MAX_INTERVAL_MS, PRESENCE_PER_PEER_MS, WORKER_PROXY_LINKS
} from '../src/p2p/constants.js'
import { packageRoot } from '../src/package-info.js'
import { escapeHtml } from './report/html.js'

// ---------------------------------------------------------------- the model

/** The longest capacity heartbeat proxies accept (MAX_INTERVAL_MS in src/roles/capacity/announcement.ts). */
export const CAPACITY_MAX_INTERVAL_MS = 600_000
/** Gossipsub mesh degree: each message arrives from about this many peers. */
export const MESH_DEGREE = 4
/** Bytes of one presence heartbeat, about. */
export const PRESENCE_BYTES = 150
/** Bytes of one capacity heartbeat, about. */
export const CAPACITY_BYTES = 420
/** DHT servers one provide touches (the Kademlia k closest, at most). */
export const DHT_PROVIDE_PEERS = 20
/** Workers per proxy in the extrapolation (P = W / 100). */
export const WORKERS_PER_PROXY = 100
/** Proxies per bootstrap node in the extrapolation (B = ceil(P / 125), 1 to 8). */
export const PROXIES_PER_BOOTSTRAP = 125
export const MAX_BOOTSTRAP = 8
/** The x axis of the curves. */
export const MIN_WORKERS = 10
export const MAX_WORKERS = 100_000

export function clamp (lo: number, value: number, hi: number): number {
  return Math.min(hi, Math.max(lo, value))
}

/** Proxies for W workers in the extrapolation: W / 100, at least 1 (not rounded, so curves stay smooth). */
export function proxiesFor (workers: number): number {
  return Math.max(1, workers / WORKERS_PER_PROXY)
}

/** Bootstrap nodes for P proxies in the extrapolation: 1 for small swarms, one per 125 proxies up to 8. */
export function bootstrapFor (proxies: number): number {
  return clamp(1, Math.ceil(proxies / PROXIES_PER_BOOTSTRAP), MAX_BOOTSTRAP)
}

/** T_p, ms: every presence publisher's heartbeat interval. */
export function presenceIntervalMs (proxies: number, bootstrap: number): number {
  return clamp(PRESENCE_INTERVAL_MS, PRESENCE_PER_PEER_MS * (bootstrap + proxies), PRESENCE_MAX_INTERVAL_MS)
}

/** Presence heartbeats every node receives a second (unique): (B + P) / T_p. */
export function presencePerNode (proxies: number, bootstrap: number): number {
  return (bootstrap + proxies) / (presenceIntervalMs(proxies, bootstrap) / 1000)
}

/** Presence bytes a node receives a second, counting the ~D copies the mesh delivers. */
export function presenceBytesPerNode (proxies: number, bootstrap: number): number {
  return MESH_DEGREE * PRESENCE_BYTES * presencePerNode(proxies, bootstrap)
}

/** T_c, ms: every worker's capacity heartbeat interval. */
export function capacityIntervalMs (workers: number): number {
  return clamp(CAPACITY_INTERVAL_MS, CAPACITY_PER_WORKER_MS * workers, CAPACITY_MAX_INTERVAL_MS)
}

/**
 * Capacity heartbeats a proxy receives a second (unique) when it routes the
 * models of `shards` of the CAPACITY_SHARDS shards (all of them by default):
 * W / T_c × shards / 16. Load changes come on top and are left out.
 */
export function capacityPerProxy (workers: number, shards: number = CAPACITY_SHARDS): number {
  return workers / (capacityIntervalMs(workers) / 1000) * (shards / CAPACITY_SHARDS)
}

/** Capacity bytes a proxy receives a second: each unique heartbeat once (~420 B). */
export function capacityBytesPerProxy (workers: number, shards: number = CAPACITY_SHARDS): number {
  return CAPACITY_BYTES * capacityPerProxy(workers, shards)
}

/** DHT servers: bootstrap nodes and proxies. */
export function dhtServers (proxies: number, bootstrap: number): number {
  return bootstrap + proxies
}

/** Hops of a DHT lookup, an upper bound: ceil(log2(B + P)), at least 1. */
export function dhtHops (proxies: number, bootstrap: number): number {
  return Math.max(1, Math.ceil(Math.log2(dhtServers(proxies, bootstrap))))
}

/** A worker's connections: 1 bootstrap + 3 proxy links + the DHT servers its provide touches, capped at 100. */
export function workerConnections (proxies: number, bootstrap: number): number {
  return Math.min(MAX_CONNECTIONS_BY_ROLE.worker,
    1 + WORKER_PROXY_LINKS + Math.min(DHT_PROVIDE_PEERS, dhtServers(proxies, bootstrap)))
}

/** A proxy's connections: about 3W/P worker links + the DHT, capped at 1 000. */
export function proxyConnections (workers: number, proxies: number, bootstrap: number): number {
  return Math.min(MAX_CONNECTIONS_BY_ROLE.proxy,
    Math.ceil(WORKER_PROXY_LINKS * workers / proxies) + Math.min(DHT_PROVIDE_PEERS, dhtServers(proxies, bootstrap)))
}

/** Every figure of the model at one size. */
export interface ScalingRow {
  workers: number
  proxies: number
  bootstrap: number
  presence_interval_s: number
  presence_msgs_per_s: number
  presence_bytes_per_s: number
  capacity_interval_s: number
  capacity_msgs_per_s: number
  capacity_msgs_per_s_one_shard: number
  capacity_bytes_per_s: number
  capacity_bytes_per_s_one_shard: number
  dht_servers: number
  dht_hops: number
  worker_connections: number
  proxy_connections: number
}

/** The model at a size; P and B follow the extrapolation unless given. */
export function scalingRow (workers: number, proxies = proxiesFor(workers), bootstrap = bootstrapFor(proxies)): ScalingRow {
  return {
    workers,
    proxies,
    bootstrap,
    presence_interval_s: presenceIntervalMs(proxies, bootstrap) / 1000,
    presence_msgs_per_s: presencePerNode(proxies, bootstrap),
    presence_bytes_per_s: presenceBytesPerNode(proxies, bootstrap),
    capacity_interval_s: capacityIntervalMs(workers) / 1000,
    capacity_msgs_per_s: capacityPerProxy(workers),
    capacity_msgs_per_s_one_shard: capacityPerProxy(workers, 1),
    capacity_bytes_per_s: capacityBytesPerProxy(workers),
    capacity_bytes_per_s_one_shard: capacityBytesPerProxy(workers, 1),
    dht_servers: dhtServers(proxies, bootstrap),
    dht_hops: dhtHops(proxies, bootstrap),
    worker_connections: workerConnections(proxies, bootstrap),
    proxy_connections: proxyConnections(workers, proxies, bootstrap)
  }
}

export const TABLE_SIZES = [10, 100, 1_000, 10_000, 100_000]

// ---------------------------------------------------------------- curves

export interface Curve {
  /** Stable key (also the SVG element's data-curve). */
  key: string
  name: string
  color: string
  dash?: string
  /** [workers, messages a second], workers ascending. */
  points: Array<[number, number]>
}

/** Where a curve bends: the clamps' corners, so the sampled path has them exactly. */
function breakpoints (): number[] {
  const capacityFloor = CAPACITY_INTERVAL_MS / CAPACITY_PER_WORKER_MS
  const capacityCeiling = CAPACITY_MAX_INTERVAL_MS / CAPACITY_PER_WORKER_MS
  // B + P = 30 with B = 1, P = W / 100
  const presenceFloor = (PRESENCE_INTERVAL_MS / PRESENCE_PER_PEER_MS - 1) * WORKERS_PER_PROXY
  return [WORKERS_PER_PROXY, capacityFloor, capacityCeiling, presenceFloor]
}

/** Worker counts from `from` to `to`, log-spaced, with the curves' corners added. */
export function sampleWorkers (from = MIN_WORKERS, to = MAX_WORKERS, perDecade = 40): number[] {
  const lo = Math.log10(from)
  const hi = Math.log10(to)
  const steps = Math.max(1, Math.ceil((hi - lo) * perDecade))
  const xs = new Set<number>()
  for (let i = 0; i <= steps; i++) xs.add(Number((10 ** (lo + (hi - lo) * i / steps)).toPrecision(10)))
  for (const b of breakpoints()) if (b > from && b < to) xs.add(b)
  return [...xs].sort((a, b) => a - b)
}

export const PRESENCE_COLOR = '#2563eb'
export const CAPACITY_COLOR = '#c2410c'

export function scalingCurves (workers: number[] = sampleWorkers()): Curve[] {
  const rows = workers.map(w => scalingRow(w))
  return [
    { key: 'presence', name: 'presence per node', color: PRESENCE_COLOR, points: rows.map(r => [r.workers, r.presence_msgs_per_s]) },
    { key: 'capacity', name: 'capacity per proxy (all models)', color: CAPACITY_COLOR, points: rows.map(r => [r.workers, r.capacity_msgs_per_s]) },
    { key: 'capacity_shard', name: `capacity per proxy (one of ${CAPACITY_SHARDS} shards)`, color: CAPACITY_COLOR, dash: '6 4', points: rows.map(r => [r.workers, r.capacity_msgs_per_s_one_shard]) }
  ]
}

// ---------------------------------------------------------------- measured runs

/** One simulator run, reduced to what the scaling chart and table show. */
export interface MeasuredRun {
  scenario: string
  nodes: number
  bootstrap: number
  proxies: number
  workers: number
  clients: number
  /** Mean over the roles of the presence messages each node accepted a second (probes included); null when not measured. */
  presence_msgs_per_s: number | null
  /** "proxy capacity" messages a second (load changes included); null when not measured. */
  capacity_msgs_per_s: number | null
  rss_per_node_mib: number | null
  event_loop_lag_p99_ms: number | null
  dht_lookup_p50_ms: number | null
  formed_ms: number | null
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function finiteOrNull (value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

/**
 * A parsed result.json reduced to a MeasuredRun, or null when it lacks the
 * basics (a scenario name and the role counts). Checked field by field: the
 * file may come from an older simulator.
 */
export function measuredRun (result: unknown): MeasuredRun | null {
  if (!isRecord(result) || typeof result.scenario !== 'string' || !isRecord(result.roles)) return null
  const roles = result.roles
  const count = (key: string): number | null => {
    const v = finiteOrNull(roles[key])
    return v != null && v >= 0 ? v : null
  }
  const bootstrap = count('bootstrap')
  const proxies = count('proxy')
  const workers = count('worker')
  const clients = count('client')
  if (bootstrap == null || proxies == null || workers == null || clients == null) return null
  const gossip = isRecord(result.gossip_per_node) ? result.gossip_per_node : {}
  const rate = (key: string): number | null => {
    const entry = gossip[key]
    return isRecord(entry) ? finiteOrNull(entry.messages_per_s) : null
  }
  const presence = Object.keys(gossip).filter(k => k.endsWith(' presence')).map(rate).filter((v): v is number => v != null)
  return {
    scenario: result.scenario,
    nodes: finiteOrNull(result.nodes) ?? bootstrap + proxies + workers + clients,
    bootstrap,
    proxies,
    workers,
    clients,
    presence_msgs_per_s: presence.length === 0 ? null : presence.reduce((a, b) => a + b, 0) / presence.length,
    capacity_msgs_per_s: rate('proxy capacity'),
    rss_per_node_mib: finiteOrNull(result.rss_per_node_mib),
    event_loop_lag_p99_ms: finiteOrNull(result.event_loop_lag_p99_ms),
    dht_lookup_p50_ms: isRecord(result.dht) ? finiteOrNull(result.dht.lookup_p50_ms) : null,
    formed_ms: finiteOrNull(result.formed_ms)
  }
}

/** Every readable results/<scenario>/result.json, fewest workers first; the unreadable ones are named in `skipped`. */
export async function loadMeasuredRuns (resultsDir: string): Promise<{ runs: MeasuredRun[], skipped: string[] }> {
  const runs: MeasuredRun[] = []
  const skipped: string[] = []
  let entries: string[]
  try {
    entries = (await readdir(resultsDir, { withFileTypes: true })).filter(e => e.isDirectory()).map(e => e.name).sort()
  } catch {
    return { runs, skipped }
  }
  for (const name of entries) {
    const file = join(resultsDir, name, 'result.json')
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch {
      continue // no result (yet) for this scenario
    }
    let run: MeasuredRun | null
    try {
      run = measuredRun(JSON.parse(text))
    } catch {
      run = null // not JSON
    }
    if (run == null) skipped.push(file)
    else runs.push(run)
  }
  runs.sort((a, b) => a.workers - b.workers || a.scenario.localeCompare(b.scenario))
  return { runs, skipped }
}

/** A measured value as a chart marker. */
export interface MeasuredPoint {
  /** Which curve it belongs beside: 'presence' or 'capacity'. */
  curve: string
  label: string
  workers: number
  value: number
}

export function measuredPoints (runs: MeasuredRun[]): MeasuredPoint[] {
  const points: MeasuredPoint[] = []
  for (const r of runs) {
    if (r.workers <= 0) continue
    if (r.presence_msgs_per_s != null && r.presence_msgs_per_s > 0) {
      points.push({ curve: 'presence', label: `${r.scenario} (${r.workers} workers, ${r.proxies} proxies): presence ${formatRate(r.presence_msgs_per_s)} msg/s per node`, workers: r.workers, value: r.presence_msgs_per_s })
    }
    if (r.capacity_msgs_per_s != null && r.capacity_msgs_per_s > 0) {
      points.push({ curve: 'capacity', label: `${r.scenario} (${r.workers} workers, ${r.proxies} proxies): capacity ${formatRate(r.capacity_msgs_per_s)} msg/s per proxy`, workers: r.workers, value: r.capacity_msgs_per_s })
    }
  }
  return points
}

// ---------------------------------------------------------------- formatting

/** 3 significant figures below 100, whole numbers with thousands separators above. */
export function formatRate (value: number): string {
  if (!Number.isFinite(value)) return 'n/a'
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US')
  if (value === 0) return '0'
  return String(Number(value.toPrecision(3)))
}

export function formatSeconds (seconds: number): string {
  if (!Number.isFinite(seconds)) return 'n/a'
  if (seconds < 600) return `${formatRate(seconds)} s`
  if (seconds < 2 * 3600) return `${formatRate(seconds / 60)} min`
  return `${formatRate(seconds / 3600)} h`
}

function cell (value: number | null, format: (v: number) => string = formatRate): string {
  return value == null ? '—' : format(value)
}

/** Columns padded to their widest cell; the first `leftColumns` left-aligned, the rest right-aligned. */
export function textTable (header: string[], rows: string[][], leftColumns = 1): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ').trimEnd()
  return [line(header), widths.map(w => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function renderModelTable (rows: ScalingRow[]): string {
  const notes = [
    `Model, per node per second (P = max(1, W/${WORKERS_PER_PROXY}), B = ceil(P/${PROXIES_PER_BOOTSTRAP}) from 1 to ${MAX_BOOTSTRAP}). Curves are heartbeats only:`,
    '  load changes (free-slot updates between capacity heartbeats) add more and are left out.',
    `  presence B/s counts the ~${MESH_DEGREE} copies the mesh delivers (${PRESENCE_BYTES} B each); capacity B/s counts each heartbeat once (${CAPACITY_BYTES} B).`,
    `  capacity: a proxy routing every model / one of the ${CAPACITY_SHARDS} shards. DHT hops: ceil(log2(B + P)), an upper bound.`
  ]
  const header = ['workers', 'P', 'B', 'T_p', 'pres msg/s', 'pres B/s', 'T_c', 'cap msg/s all/shard', 'cap B/s all/shard', 'DHT hops', 'conn/worker', 'conn/proxy']
  const body = rows.map(r => [
    formatRate(r.workers), formatRate(r.proxies), String(r.bootstrap), formatSeconds(r.presence_interval_s),
    formatRate(r.presence_msgs_per_s), formatRate(r.presence_bytes_per_s), formatSeconds(r.capacity_interval_s),
    `${formatRate(r.capacity_msgs_per_s)} / ${formatRate(r.capacity_msgs_per_s_one_shard)}`,
    `${formatRate(r.capacity_bytes_per_s)} / ${formatRate(r.capacity_bytes_per_s_one_shard)}`,
    String(r.dht_hops), String(r.worker_connections), String(r.proxy_connections)
  ])
  return [...notes, '', textTable(header, body, 0)].join('\n')
}

export function renderMeasuredTable (runs: MeasuredRun[]): string {
  const notes = [
    'Measured (simulations/results/*/result.json). The simulator sends one extra presence heartbeat every 5 s from',
    '  a random node as a delivery probe (every second before), so measured presence includes 0.2 msg/s of probes',
    '  (1 msg/s in older runs); measured capacity',
    '  includes load changes. "model" is the arithmetic above at the run\'s own B, P and W.'
  ]
  if (runs.length === 0) return [...notes, '', '  (no results: run `npm run sim -- <scenario>` first)'].join('\n')
  const header = ['scenario', 'nodes', 'workers', 'proxies', 'pres msg/s', 'model', 'cap msg/s', 'model', 'RSS MiB', 'lag p99 ms', 'DHT p50 ms', 'formed s']
  const body = runs.map(r => {
    const model = scalingRow(r.workers, r.proxies, r.bootstrap)
    return [
      r.scenario, String(r.nodes), String(r.workers), String(r.proxies),
      cell(r.presence_msgs_per_s), formatRate(model.presence_msgs_per_s),
      cell(r.capacity_msgs_per_s), formatRate(model.capacity_msgs_per_s),
      cell(r.rss_per_node_mib), cell(r.event_loop_lag_p99_ms), cell(r.dht_lookup_p50_ms),
      cell(r.formed_ms, ms => formatRate(ms / 1000))
    ]
  })
  return [...notes, '', textTable(header, body)].join('\n')
}

// ---------------------------------------------------------------- SVG

export interface ScalingChartInput {
  title?: string
  curves: Curve[]
  points: MeasuredPoint[]
  /** Lines of small print under the legend. */
  notes?: string[]
}

/** A number for an SVG attribute: one decimal, and 0 for anything not finite. */
function num (value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10) / 10) : '0'
}

const AXIS = '#6b7280'
const GRID = '#e5e7eb'
const MINOR_GRID = '#f3f4f6'
const FONT = 'system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif'

/** Decades [10^lo, 10^hi] covering every positive value (at least one decade wide). */
function decades (values: number[], fallback: [number, number]): [number, number] {
  const positive = values.filter(v => Number.isFinite(v) && v > 0)
  if (positive.length === 0) return fallback
  const lo = Math.floor(Math.log10(Math.min(...positive)) + 1e-9)
  let hi = Math.ceil(Math.log10(Math.max(...positive)) - 1e-9)
  if (hi <= lo) hi = lo + 1
  return [lo, hi]
}

function decadeLabel (exponent: number): string {
  if (exponent >= 6) return `${10 ** (exponent - 6)}M`
  if (exponent >= 3) return `${10 ** (exponent - 3)}k`
  return exponent < 0 ? (10 ** exponent).toFixed(-exponent) : String(10 ** exponent)
}

function marker (point: MeasuredPoint, cx: number, cy: number, color: string, cls = 'point'): string {
  const title = `<title>${escapeHtml(point.label)}</title>`
  const attrs = `class="${cls}" data-curve="${escapeHtml(point.curve)}" fill="${color}" fill-opacity="0.85" stroke="#ffffff" stroke-width="1.2"`
  if (point.curve === 'presence') return `<circle ${attrs} cx="${num(cx)}" cy="${num(cy)}" r="4.5">${title}</circle>`
  return `<rect ${attrs} x="${num(cx - 4.2)}" y="${num(cy - 4.2)}" width="8.4" height="8.4" transform="rotate(45 ${num(cx)} ${num(cy)})">${title}</rect>`
}

/**
 * The chart: log-log, workers on x, messages a second on y, one path per curve
 * (class="curve"), one marker per measured point (class="point": circles beside
 * presence, diamonds beside capacity), legend on the right. Pure: same input,
 * same text.
 */
export function renderScalingSvg (input: ScalingChartInput): string {
  const width = 920
  const height = 470
  const f = { left: 70, right: 300, top: 46, bottom: 56 }
  const plotW = width - f.left - f.right
  const plotH = height - f.top - f.bottom
  const xs = [...input.curves.flatMap(c => c.points.map(p => p[0])), ...input.points.map(p => p.workers)]
  const ys = [...input.curves.flatMap(c => c.points.map(p => p[1])), ...input.points.map(p => p.value)]
  const [x0, x1] = decades(xs, [1, 5])
  const [y0, y1] = decades(ys, [-2, 3])
  const x = (v: number): number => f.left + (Math.log10(v) - x0) / (x1 - x0) * plotW
  const y = (v: number): number => f.top + plotH * (1 - (Math.log10(v) - y0) / (y1 - y0))
  const title = input.title ?? 'Cocoon swarm scaling: gossip received per node'
  const parts: string[] = []
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="${escapeHtml(title)}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" ` +
    `font-family="${FONT}" font-size="12">`)
  parts.push(`<title>${escapeHtml(title)}</title>`)
  parts.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`)
  parts.push(`<text x="${num(f.left)}" y="24" font-size="16" font-weight="700" fill="#111827">${escapeHtml(title)}</text>`)
  // grid: minor lines at 2..9 × each decade, major at the decades
  const xB = f.left + plotW
  const yB = f.top + plotH
  for (let e = y0; e < y1; e++) {
    for (let m = 2; m <= 9; m++) {
      const yy = num(y(m * 10 ** e))
      parts.push(`<line x1="${num(f.left)}" x2="${num(xB)}" y1="${yy}" y2="${yy}" stroke="${MINOR_GRID}"/>`)
    }
  }
  for (let e = x0; e < x1; e++) {
    for (let m = 2; m <= 9; m++) {
      const xx = num(x(m * 10 ** e))
      parts.push(`<line x1="${xx}" x2="${xx}" y1="${num(f.top)}" y2="${num(yB)}" stroke="${MINOR_GRID}"/>`)
    }
  }
  for (let e = y0; e <= y1; e++) {
    const yy = num(y(10 ** e))
    parts.push(`<line x1="${num(f.left)}" x2="${num(xB)}" y1="${yy}" y2="${yy}" stroke="${GRID}"/>`)
    parts.push(`<text x="${num(f.left - 6)}" y="${yy}" dy="0.32em" text-anchor="end" font-size="11" fill="#4b5563">${escapeHtml(decadeLabel(e))}</text>`)
  }
  for (let e = x0; e <= x1; e++) {
    const xx = num(x(10 ** e))
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${num(f.top)}" y2="${num(yB)}" stroke="${GRID}"/>`)
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${num(yB)}" y2="${num(yB + 4)}" stroke="${AXIS}"/>`)
    parts.push(`<text x="${xx}" y="${num(yB + 17)}" text-anchor="middle" font-size="11" fill="#4b5563">${escapeHtml(decadeLabel(e))}</text>`)
  }
  parts.push(`<line x1="${num(f.left)}" x2="${num(xB)}" y1="${num(yB)}" y2="${num(yB)}" stroke="${AXIS}"/>`)
  parts.push(`<line x1="${num(f.left)}" x2="${num(f.left)}" y1="${num(f.top)}" y2="${num(yB)}" stroke="${AXIS}"/>`)
  // axis labels
  parts.push(`<text x="${num(f.left + plotW / 2)}" y="${num(height - 14)}" text-anchor="middle" fill="#111827">` +
    `${escapeHtml(`workers W (proxies P = max(1, W/${WORKERS_PER_PROXY}))`)}</text>`)
  const yMid = f.top + plotH / 2
  parts.push(`<text x="18" y="${num(yMid)}" text-anchor="middle" transform="rotate(-90 18 ${num(yMid)})" fill="#111827">` +
    'messages per second per node</text>')
  // curves
  for (const c of input.curves) {
    const pts = c.points.filter(([px, py]) => Number.isFinite(px) && px > 0 && Number.isFinite(py) && py > 0)
    const d = pts.map(([px, py], i) => `${i === 0 ? 'M' : 'L'}${num(x(px))} ${num(y(py))}`).join(' ')
    const dash = c.dash == null ? '' : ` stroke-dasharray="${escapeHtml(c.dash)}"`
    parts.push(`<path class="curve" data-curve="${escapeHtml(c.key)}" d="${d === '' ? 'M0 0' : d}" fill="none" stroke="${escapeHtml(c.color)}" stroke-width="2.2"${dash} ` +
      `stroke-linejoin="round" stroke-linecap="round"><title>${escapeHtml(c.name)}</title></path>`)
  }
  // measured points, coloured like the curve they sit beside
  const colorOf = (curve: string): string => escapeHtml(input.curves.find(c => c.key === curve)?.color ?? '#374151')
  for (const p of input.points) {
    if (!(Number.isFinite(p.workers) && p.workers > 0 && Number.isFinite(p.value) && p.value > 0)) continue
    parts.push(marker(p, x(p.workers), y(p.value), colorOf(p.curve)))
  }
  // legend
  const lx = xB + 20
  let ly = f.top + 6
  parts.push(`<g class="legend">`)
  parts.push(`<text x="${num(lx)}" y="${num(ly)}" font-weight="700" fill="#111827">Model (heartbeats only)</text>`)
  ly += 20
  for (const c of input.curves) {
    const dash = c.dash == null ? '' : ` stroke-dasharray="${escapeHtml(c.dash)}"`
    parts.push(`<line x1="${num(lx)}" x2="${num(lx + 26)}" y1="${num(ly - 4)}" y2="${num(ly - 4)}" stroke="${escapeHtml(c.color)}" stroke-width="2.5"${dash}/>`)
    parts.push(`<text x="${num(lx + 32)}" y="${num(ly)}" fill="#374151">${escapeHtml(c.name)}</text>`)
    ly += 18
  }
  ly += 8
  parts.push(`<text x="${num(lx)}" y="${num(ly)}" font-weight="700" fill="#111827">Measured (simulator)</text>`)
  ly += 20
  const kinds = [...new Set(input.points.map(p => p.curve))]
  if (kinds.length === 0) {
    parts.push(`<text x="${num(lx)}" y="${num(ly)}" font-style="italic" fill="#9ca3af">no runs found</text>`)
    ly += 18
  }
  for (const k of kinds) {
    const name = k === 'presence' ? 'presence per node (mean of roles)' : k === 'capacity' ? 'capacity per proxy' : k
    parts.push(marker({ curve: k, label: name, workers: 0, value: 0 }, lx + 13, ly - 4, colorOf(k), 'legend-point'))
    parts.push(`<text x="${num(lx + 32)}" y="${num(ly)}" fill="#374151">${escapeHtml(name)}</text>`)
    ly += 18
  }
  ly += 6
  for (const note of input.notes ?? []) {
    parts.push(`<text x="${num(lx)}" y="${num(ly)}" font-size="10.5" fill="#6b7280">${escapeHtml(note)}</text>`)
    ly += 14
  }
  parts.push('</g></svg>')
  return parts.join('\n') + '\n'
}

export const CHART_NOTES = [
  'Measured presence includes ~1 msg/s of',
  'delivery probes (one extra heartbeat a',
  'second from a random node).',
  'Measured capacity includes load changes',
  '(free-slot updates), which the curves',
  'leave out.',
  `P = max(1, W/${WORKERS_PER_PROXY}); B = 1 to ${MAX_BOOTSTRAP}.`
]

// ---------------------------------------------------------------- CLI

export async function scalingMain (args: string[], out: (line: string) => void = line => { process.stdout.write(line + '\n') }): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args, options: { results: { type: 'string' }, svg: { type: 'string' }, json: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
  } catch (err) {
    process.stderr.write(`scaling: ${(err as Error).message}\n`)
    return 2
  }
  if (parsed.values.help === true) {
    out('usage: node dist/simulations/scaling.js [--results DIR] [--svg FILE] [--json FILE]\n' +
      '  defaults: simulations/results, simulations/scaling.svg, simulations/results/scaling.json')
    return 0
  }
  const root = packageRoot()
  const resultsDir = parsed.values.results ?? join(root, 'simulations', 'results')
  const svgFile = parsed.values.svg ?? join(root, 'simulations', 'scaling.svg')
  const jsonFile = parsed.values.json ?? join(resultsDir, 'scaling.json')

  const { runs, skipped } = await loadMeasuredRuns(resultsDir)
  for (const file of skipped) process.stderr.write(`scaling: skipped ${file} (not a readable result)\n`)
  // the curves start at 10 workers, or lower when a measured run is smaller, so every marker has its curve
  const smallest = Math.min(MIN_WORKERS, ...runs.filter(r => r.workers > 0).map(r => r.workers))
  const from = 10 ** Math.floor(Math.log10(smallest))
  const curves = scalingCurves(sampleWorkers(from, MAX_WORKERS))
  const points = measuredPoints(runs)
  const table = TABLE_SIZES.map(w => scalingRow(w))

  await mkdir(dirname(svgFile), { recursive: true })
  await writeFile(svgFile, renderScalingSvg({ curves, points, notes: CHART_NOTES }))
  await mkdir(dirname(jsonFile), { recursive: true })
  await writeFile(jsonFile, JSON.stringify({
    model: {
      workers_per_proxy: WORKERS_PER_PROXY,
      proxies_per_bootstrap: PROXIES_PER_BOOTSTRAP,
      max_bootstrap: MAX_BOOTSTRAP,
      mesh_degree: MESH_DEGREE,
      presence_bytes: PRESENCE_BYTES,
      capacity_bytes: CAPACITY_BYTES,
      capacity_shards: CAPACITY_SHARDS,
      presence_interval_ms: { min: PRESENCE_INTERVAL_MS, per_publisher: PRESENCE_PER_PEER_MS, max: PRESENCE_MAX_INTERVAL_MS },
      capacity_interval_ms: { min: CAPACITY_INTERVAL_MS, per_worker: CAPACITY_PER_WORKER_MS, max: CAPACITY_MAX_INTERVAL_MS },
      note: 'heartbeats only (load changes left out); presence bytes count ~mesh_degree copies, capacity bytes each heartbeat once'
    },
    table,
    curves: curves.map(c => ({ key: c.key, name: c.name, points: c.points.map(([workers, msgs]) => ({ workers, messages_per_s: msgs })) })),
    measured: runs,
    measured_note: 'presence is the mean over roles and includes ~1 msg/s of delivery probes; capacity includes load changes'
  }, null, 2) + '\n')
  out(renderModelTable(table))
  out('')
  out(renderMeasuredTable(runs))
  const cwd = process.cwd()
  out('')
  out(`wrote ${relative(cwd, svgFile) || svgFile}, ${relative(cwd, jsonFile) || jsonFile} (${runs.length} measured runs)`)
  return 0
}

// run as a script (not when the test imports the functions)
if (process.argv[1] != null && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  scalingMain(process.argv.slice(2)).then(code => { process.exitCode = code }, err => {
    process.stderr.write(`scaling: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}

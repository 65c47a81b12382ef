/**
 * The simulator's HTML report: one self-contained page (inline CSS, inline SVG
 * charts drawn here, no scripts, no fonts, no requests) so it opens from a CI
 * artifact or a mail attachment as it is. Every string from the result is
 * escaped; every number that reaches an SVG attribute goes through `num` so a
 * null or NaN in the data can never produce an invalid attribute.
 */
import { formatDuration, formatMs, formatPercent, formatTon, parseNanoton, shortPeer, tonNumber } from './summary.js'
import type { SimEarning, SimEvent, SimResult, SimSeriesPoint } from './types.js'

export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c)
}

/** A number for an SVG attribute: one decimal, and 0 for anything not finite. */
function num (value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 10) / 10) : '0'
}

function finite (value: number | null | undefined): value is number {
  return value != null && Number.isFinite(value)
}

// ---------------------------------------------------------------- scales and ticks

interface Frame { width: number, height: number, left: number, right: number, top: number, bottom: number }

function plotWidth (f: Frame): number { return f.width - f.left - f.right }
function plotHeight (f: Frame): number { return f.height - f.top - f.bottom }

/** 0 .. a round number at or above max, in about `count` steps of 1, 2 or 5 × 10^k. */
function niceTicks (max: number, count = 5): number[] {
  if (!finite(max) || max <= 0) return [0, 1]
  const rough = max / count
  const power = 10 ** Math.floor(Math.log10(rough))
  const step = [1, 2, 5, 10].map(m => m * power).find(s => s >= rough) ?? 10 * power
  const ticks: number[] = []
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)))
  return ticks
}

const TIME_STEPS_MS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200].map(s => s * 1000)

/** Time-axis ticks on whole seconds and minutes rather than decimal steps. */
function timeTicks (maxMs: number, count = 6): number[] {
  if (!finite(maxMs) || maxMs <= 0) return [0]
  const step = TIME_STEPS_MS.find(s => maxMs / s <= count) ?? TIME_STEPS_MS[TIME_STEPS_MS.length - 1]
  const ticks: number[] = []
  for (let t = 0; t <= maxMs; t += step) ticks.push(t)
  return ticks
}

function timeLabel (ms: number): string {
  const seconds = Math.round(ms / 1000)
  if (seconds < 60) return `${seconds}s`
  const m = Math.floor(seconds / 60)
  const s = seconds % 60
  return s === 0 ? `${m}m` : `${m}m${String(s).padStart(2, '0')}`
}

/** Axis labels for milliseconds: short and exact on round ticks ('500 ms', '1.5 s'). */
function msLabel (ms: number): string {
  if (ms < 1000) return `${ms} ms`
  return `${Number((ms / 1000).toPrecision(6))} s`
}

// ---------------------------------------------------------------- chart pieces

const AXIS = '#6b7280'
const GRID = '#e5e7eb'

function svgOpen (chart: string, f: Frame, label: string): string {
  return `<svg role="img" aria-label="${escapeHtml(label)}" data-chart="${chart}" viewBox="0 0 ${num(f.width)} ${num(f.height)}" ` +
    `width="${num(f.width)}" height="${num(f.height)}" xmlns="http://www.w3.org/2000/svg">`
}

/** Gridlines, tick labels and the plot frame. */
function axes (f: Frame, xTicks: number[], x: (v: number) => number, xLabel: (v: number) => string,
  yTicks: number[], y: (v: number) => number, yLabel: (v: number) => string): string {
  const x0 = f.left
  const x1 = f.width - f.right
  const y0 = f.height - f.bottom
  const parts: string[] = []
  for (const t of yTicks) {
    const yy = num(y(t))
    parts.push(`<line x1="${num(x0)}" x2="${num(x1)}" y1="${yy}" y2="${yy}" stroke="${GRID}"/>`)
    parts.push(`<text x="${num(x0 - 6)}" y="${yy}" dy="0.32em" text-anchor="end" class="tick">${escapeHtml(yLabel(t))}</text>`)
  }
  for (const t of xTicks) {
    const xx = num(x(t))
    parts.push(`<line x1="${xx}" x2="${xx}" y1="${num(y0)}" y2="${num(y0 + 4)}" stroke="${AXIS}"/>`)
    parts.push(`<text x="${xx}" y="${num(y0 + 16)}" text-anchor="middle" class="tick">${escapeHtml(xLabel(t))}</text>`)
  }
  parts.push(`<line x1="${num(x0)}" x2="${num(x1)}" y1="${num(y0)}" y2="${num(y0)}" stroke="${AXIS}"/>`)
  parts.push(`<line x1="${num(x0)}" x2="${num(x0)}" y1="${num(f.top)}" y2="${num(y0)}" stroke="${AXIS}"/>`)
  return parts.join('')
}

function noData (f: Frame, note = 'no data'): string {
  return `<text x="${num(f.left + plotWidth(f) / 2)}" y="${num(f.top + plotHeight(f) / 2)}" text-anchor="middle" class="nodata">${escapeHtml(note)}</text>`
}

/**
 * A polyline with gaps where the value is missing; a point with no neighbour
 * becomes a dot so a lone bucket is still visible.
 */
function gappedLine (points: Array<[number, number | null]>, x: (v: number) => number, y: (v: number) => number,
  style: { color: string, dash?: string, width?: number }, title: string): string {
  const runs: Array<Array<[number, number]>> = []
  let run: Array<[number, number]> = []
  for (const [t, v] of points) {
    if (finite(t) && finite(v)) {
      run.push([t, v])
    } else if (run.length > 0) {
      runs.push(run)
      run = []
    }
  }
  if (run.length > 0) runs.push(run)
  const dash = style.dash == null ? '' : ` stroke-dasharray="${style.dash}"`
  const parts: string[] = []
  for (const r of runs) {
    if (r.length === 1) {
      parts.push(`<circle class="series" cx="${num(x(r[0][0]))}" cy="${num(y(r[0][1]))}" r="3" fill="${style.color}"><title>${escapeHtml(title)}</title></circle>`)
    } else {
      const d = r.map(([t, v], i) => `${i === 0 ? 'M' : 'L'}${num(x(t))} ${num(y(v))}`).join(' ')
      parts.push(`<path class="series" d="${d}" fill="none" stroke="${style.color}" stroke-width="${style.width ?? 2}"${dash} ` +
        `stroke-linejoin="round" stroke-linecap="round"><title>${escapeHtml(title)}</title></path>`)
    }
  }
  return parts.join('')
}

function eventColor (kind: string): string {
  if (/crash|leave|partition|adversary|slow|kill|fail/i.test(kind)) return '#b91c1c'
  if (/join|heal|recover|restart/i.test(kind)) return '#15803d'
  return '#6d28d9'
}

const EVENT_ROW_HEIGHT = 13
const EVENT_ROWS = 3
const CHAR_WIDTH = 6.6

/**
 * Scenario events as vertical markers. Labels ('3 worker_crash') are stacked
 * in up to EVENT_ROWS rows above the plot so close events don't overprint;
 * one that fits nowhere keeps only its number, which the events table explains.
 */
function eventLayer (events: SimEvent[], f: Frame, x: (v: number) => number, maxT: number): string {
  const rowEnd: number[] = Array.from({ length: EVENT_ROWS }, () => -Infinity)
  const parts: string[] = []
  const plotTop = f.top
  const plotBottom = f.height - f.bottom
  events.forEach((event, i) => {
    if (!finite(event.t_ms) || event.t_ms < 0 || event.t_ms > maxT) return
    const xx = x(event.t_ms)
    const color = eventColor(event.kind)
    // labels run right of the marker, or left of it near the right edge
    const place = (text: string): { left: number, right: number, anchorEnd: boolean } => {
      const width = text.length * CHAR_WIDTH + 3
      const anchorEnd = xx + width > f.width - 2
      return anchorEnd ? { left: xx - width, right: xx, anchorEnd } : { left: xx, right: xx + width, anchorEnd }
    }
    let label = `${i + 1} ${event.kind}`
    let extent = place(label)
    let row = rowEnd.findIndex(end => end + 4 <= extent.left)
    if (row === -1) {
      label = String(i + 1)
      extent = place(label)
      row = rowEnd.findIndex(end => end + 2 <= extent.left)
      if (row === -1) row = rowEnd.indexOf(Math.min(...rowEnd))
    }
    const anchorEnd = extent.anchorEnd
    rowEnd[row] = Math.max(rowEnd[row], extent.right)
    const ty = plotTop - 4 - (EVENT_ROWS - 1 - row) * EVENT_ROW_HEIGHT
    const title = `${formatDuration(event.t_ms)}: ${event.kind} — ${event.detail}`
    parts.push(`<g class="event"><title>${escapeHtml(title)}</title>` +
      `<line x1="${num(xx)}" x2="${num(xx)}" y1="${num(ty + 2)}" y2="${num(plotBottom)}" stroke="${color}" stroke-width="1.2" stroke-dasharray="4 3"/>` +
      `<text x="${num(anchorEnd ? xx - 3 : xx + 3)}" y="${num(ty)}" text-anchor="${anchorEnd ? 'end' : 'start'}" fill="${color}" class="evlabel">${escapeHtml(label)}</text></g>`)
  })
  return parts.join('')
}

interface LineSpec { key: keyof SimSeriesPoint, name: string, color: string, dash?: string }

const LATENCY_LINES: LineSpec[] = [
  { key: 'ttft_p50_ms', name: 'TTFT p50', color: '#2563eb' },
  { key: 'ttft_p99_ms', name: 'TTFT p99', color: '#2563eb', dash: '6 4' },
  { key: 'latency_p50_ms', name: 'Latency p50', color: '#c2410c' },
  { key: 'latency_p99_ms', name: 'Latency p99', color: '#c2410c', dash: '6 4' }
]

function seriesValue (point: SimSeriesPoint, key: keyof SimSeriesPoint): number | null {
  const value = point[key]
  return typeof value === 'number' && Number.isFinite(value) ? value : null
}

/** Time span the time charts cover: the run, stretched to any bucket or event past it. */
function timeDomain (result: SimResult, bucketMs: number): number {
  const candidates = [result.load_ms ?? result.duration_ms, ...result.series.map(p => p.t_ms + bucketMs), ...result.events.map(e => e.t_ms)]
  const max = Math.max(0, ...candidates.filter(finite))
  return max > 0 ? max : 1000
}

function bucketWidth (series: SimSeriesPoint[]): number {
  const gaps = series.slice(1).map((p, i) => p.t_ms - series[i].t_ms).filter(g => finite(g) && g > 0).sort((a, b) => a - b)
  return gaps.length === 0 ? 0 : gaps[Math.floor(gaps.length / 2)]
}

function timeFrame (events: SimEvent[]): Frame {
  const labelRows = events.length === 0 ? 0 : EVENT_ROWS
  return { width: 560, height: 250 + labelRows * EVENT_ROW_HEIGHT, left: 58, right: 24, top: 12 + labelRows * EVENT_ROW_HEIGHT, bottom: 28 }
}

function latencyChart (result: SimResult): string {
  const f = timeFrame(result.events)
  const bucket = bucketWidth(result.series)
  const maxT = timeDomain(result, bucket)
  const values = result.series.flatMap(p => LATENCY_LINES.map(l => seriesValue(p, l.key))).filter(finite)
  const yTicks = niceTicks(values.length === 0 ? 1000 : Math.max(...values))
  const yMax = yTicks[yTicks.length - 1]
  const x = (t: number): number => f.left + (t / maxT) * plotWidth(f)
  const y = (v: number): number => f.top + plotHeight(f) * (1 - v / yMax)
  const lines = values.length === 0
    ? noData(f)
    : LATENCY_LINES.map(l => gappedLine(result.series.map(p => [p.t_ms + bucket / 2, seriesValue(p, l.key)]), x, y,
      { color: l.color, dash: l.dash }, l.name)).join('')
  const label = `Latency percentiles over time: TTFT and total latency, p50 and p99, with ${result.events.length} scenario events marked`
  return svgOpen('latency', f, label) +
    axes(f, timeTicks(maxT), x, timeLabel, yTicks, y, msLabel) +
    eventLayer(result.events, f, x, maxT) + lines + '</svg>'
}

function successChart (result: SimResult): string {
  const f = timeFrame(result.events)
  const bucket = bucketWidth(result.series)
  const maxT = timeDomain(result, bucket)
  const x = (t: number): number => f.left + (t / maxT) * plotWidth(f)
  const y = (v: number): number => f.top + plotHeight(f) * (1 - v)
  // a bucket without jobs says nothing about success: drawn as a gap, not as 100 %
  const points: Array<[number, number | null]> = result.series.map(p => [p.t_ms + bucket / 2, p.jobs > 0 ? seriesValue(p, 'success_rate') : null])
  const body = points.some(([, v]) => v != null)
    ? gappedLine(points, x, y, { color: '#047857', width: 2.2 }, 'Success rate')
    : noData(f)
  const label = `Success rate over time, 0 to 100 percent, with ${result.events.length} scenario events marked`
  return svgOpen('success', f, label) +
    axes(f, timeTicks(maxT), x, timeLabel, [0, 0.25, 0.5, 0.75, 1], y, v => `${Math.round(v * 100)}%`) +
    eventLayer(result.events, f, x, maxT) + body + '</svg>'
}

const ROLE_ORDER: Array<{ role: SimEarning['role'], title: string }> = [
  { role: 'worker', title: 'Workers — earned' },
  { role: 'proxy', title: 'Proxies — kept' },
  { role: 'client', title: 'Clients — paid' }
]
/** Per role; beyond it the smallest honest nodes fold into one '+ N more' line. Adversaries are always shown. */
const EARNINGS_ROWS_PER_ROLE = 16

function earningsChart (result: SimResult): string {
  const rowHeight = 18
  const groupHeight = 22
  const left = 150
  const right = 110
  const width = 560
  const rows: string[] = []
  let yy = 8
  const valid = result.earnings.filter(e => parseNanoton(e.nanoton) != null)
  const max = Math.max(0, ...valid.map(e => tonNumber(e.nanoton)))
  const barWidth = (ton: number): number => max > 0 && ton > 0 ? Math.max((ton / max) * (width - left - right), 1) : 0
  for (const { role, title } of ROLE_ORDER) {
    const group = valid.filter(e => e.role === role).sort((a, b) => tonNumber(b.nanoton) - tonNumber(a.nanoton))
    if (group.length === 0) continue
    const total = group.reduce((sum, e) => sum + (parseNanoton(e.nanoton) ?? 0n), 0n)
    rows.push(`<text x="4" y="${num(yy + 14)}" class="group">${escapeHtml(title)} (${group.length}, total ${escapeHtml(formatTon(total.toString()))})</text>`)
    yy += groupHeight
    const groupTop = yy
    let shown = group
    let hidden: SimEarning[] = []
    if (group.length > EARNINGS_ROWS_PER_ROLE) {
      const top = group.slice(0, EARNINGS_ROWS_PER_ROLE)
      const extraAdversaries = group.slice(EARNINGS_ROWS_PER_ROLE).filter(e => e.adversary)
      shown = [...top, ...extraAdversaries]
      hidden = group.slice(EARNINGS_ROWS_PER_ROLE).filter(e => !e.adversary)
    }
    for (const e of shown) {
      const ton = tonNumber(e.nanoton)
      const w = barWidth(ton)
      const color = e.adversary ? '#dc2626' : role === 'client' ? '#64748b' : role === 'proxy' ? '#0d9488' : '#2563eb'
      const name = `${e.adversary ? '⚠ ' : ''}${shortPeer(e.peer)}`
      const tip = `${e.role} ${e.peer}${e.adversary ? ' (adversary)' : ''}: ${formatTon(e.nanoton)}`
      rows.push(`<g${e.adversary ? ' class="adversary"' : ''}><title>${escapeHtml(tip)}</title>` +
        `<text x="${num(left - 6)}" y="${num(yy + rowHeight / 2)}" dy="0.32em" text-anchor="end" class="peer${e.adversary ? ' adv' : ''}">${escapeHtml(name)}</text>` +
        `<rect class="series" x="${num(left)}" y="${num(yy + 3)}" width="${num(w)}" height="${num(rowHeight - 6)}" fill="${color}" rx="2"/>` +
        `<text x="${num(left + w + 5)}" y="${num(yy + rowHeight / 2)}" dy="0.32em" class="val${e.adversary ? ' adv' : ''}">${escapeHtml(formatTon(e.nanoton))}</text></g>`)
      yy += rowHeight
    }
    if (hidden.length > 0) {
      const rest = hidden.reduce((sum, e) => sum + (parseNanoton(e.nanoton) ?? 0n), 0n)
      rows.push(`<text x="${num(left)}" y="${num(yy + rowHeight / 2)}" dy="0.32em" class="tick">+ ${hidden.length} more, ${escapeHtml(formatTon(rest.toString()))} together</text>`)
      yy += rowHeight
    }
    // each group's zero line, below its heading
    rows.push(`<line x1="${num(left)}" x2="${num(left)}" y1="${num(groupTop)}" y2="${num(yy)}" stroke="${AXIS}"/>`)
    yy += 6
  }
  const height = Math.max(yy + 8, 120)
  const f: Frame = { width, height, left, right, top: 8, bottom: 8 }
  const adversaries = valid.filter(e => e.adversary).length
  const label = `Earnings per node, grouped by role: ${valid.length} nodes, ${adversaries} adversaries highlighted in red`
  const body = rows.length === 0
    ? `<line x1="${num(left)}" x2="${num(left)}" y1="${num(f.top)}" y2="${num(height - f.bottom)}" stroke="${AXIS}"/>` + noData(f)
    : rows.join('')
  return svgOpen('earnings', f, label) + body + '</svg>'
}

/** Enough CDF steps to look exact at this size without one path node per sample. */
const CDF_MAX_POINTS = 400

function gossipChart (result: SimResult): string {
  const f: Frame = { width: 560, height: 250, left: 58, right: 24, top: 14, bottom: 28 }
  const samples = result.gossip_propagation_ms.filter(v => finite(v) && v >= 0).sort((a, b) => a - b)
  const xTicks = niceTicks(samples.length === 0 ? 1000 : samples[samples.length - 1], 6)
  const xMax = xTicks[xTicks.length - 1]
  const x = (v: number): number => f.left + (v / xMax) * plotWidth(f)
  const y = (p: number): number => f.top + plotHeight(f) * (1 - p)
  const parts: string[] = []
  if (samples.length === 0) {
    parts.push(noData(f))
  } else {
    const n = samples.length
    const step = Math.max(1, Math.ceil(n / CDF_MAX_POINTS))
    const indices: number[] = []
    for (let i = 0; i < n; i += step) indices.push(i)
    if (indices[indices.length - 1] !== n - 1) indices.push(n - 1)
    let d = `M${num(x(samples[0]))} ${num(y(0))}`
    for (const i of indices) d += ` H${num(x(samples[i]))} V${num(y((i + 1) / n))}`
    // p50 and p99 guides, so the chart answers 'how long until most nodes have it'
    for (const q of [0.5, 0.99]) {
      const v = samples[Math.min(n - 1, Math.ceil(q * n) - 1)]
      parts.push(`<line x1="${num(f.left)}" x2="${num(x(v))}" y1="${num(y(q))}" y2="${num(y(q))}" stroke="#9ca3af" stroke-dasharray="3 3"/>` +
        `<line x1="${num(x(v))}" x2="${num(x(v))}" y1="${num(y(q))}" y2="${num(f.height - f.bottom)}" stroke="#9ca3af" stroke-dasharray="3 3"/>` +
        `<text x="${num(x(v) + 4)}" y="${num(y(q) + 12)}" class="tick">p${Math.round(q * 100)} ${escapeHtml(formatMs(v))}</text>`)
    }
    parts.push(`<path class="series" d="${d}" fill="none" stroke="#7c3aed" stroke-width="2" stroke-linejoin="round"><title>${n} deliveries</title></path>`)
  }
  const label = `Gossip propagation CDF: share of ${samples.length} deliveries received within a given time`
  return svgOpen('gossip', f, label) +
    axes(f, xTicks, x, msLabel, [0, 0.25, 0.5, 0.75, 1], y, v => `${Math.round(v * 100)}%`) +
    parts.join('') + '</svg>'
}

// ---------------------------------------------------------------- page

function legend (items: Array<{ name: string, color: string, dash?: string, kind?: 'line' | 'bar' }>): string {
  return '<ul class="legend">' + items.map(i => {
    const swatch = i.kind === 'bar'
      ? `<svg width="14" height="10" aria-hidden="true"><rect width="14" height="10" rx="2" fill="${i.color}"/></svg>`
      : `<svg width="26" height="10" aria-hidden="true"><line x1="1" x2="25" y1="5" y2="5" stroke="${i.color}" stroke-width="2.5"${i.dash == null ? '' : ` stroke-dasharray="${i.dash}"`}/></svg>`
    return `<li>${swatch}${escapeHtml(i.name)}</li>`
  }).join('') + '</ul>'
}

const EVENT_LEGEND = [
  { name: 'event: failure', color: '#b91c1c', dash: '4 3' },
  { name: 'event: recovery', color: '#15803d', dash: '4 3' },
  { name: 'event: other', color: '#6d28d9', dash: '4 3' }
]

/** Legend entries for the event colours that this run's events actually use. */
function eventLegend (events: SimEvent[]): typeof EVENT_LEGEND {
  const used = new Set(events.map(e => eventColor(e.kind)))
  return EVENT_LEGEND.filter(l => used.has(l.color))
}

function figure (title: string, chart: string, caption: string): string {
  return `<figure class="card"><h2>${escapeHtml(title)}</h2>${chart}${caption}</figure>`
}

function headlineRows (r: SimResult): Array<[string, string, boolean?]> {
  const { jobs, money, gossip, dht } = r
  return [
    ['Success rate', `${formatPercent(r.success_rate)} — ${jobs.ok} of ${jobs.total} jobs ok, ${jobs.failed} failed`],
    ['TTFT p50 / p99', `${formatMs(r.ttft_p50_ms)} / ${formatMs(r.ttft_p99_ms)}`],
    ['Latency p50 / p99', `${formatMs(r.latency_p50_ms)} / ${formatMs(r.latency_p99_ms)}`],
    ['Money conserved', `${r.money_conserved ? 'yes' : 'NO'} — clients paid ${formatTon(money.clients_paid)}; ` +
      `workers earned ${formatTon(money.workers_earned)}; proxies kept ${formatTon(money.proxies_kept)}`, !r.money_conserved],
    ['RSS per node', `${Number.isFinite(r.rss_per_node_mib) ? r.rss_per_node_mib.toFixed(1) : 'n/a'} MiB`],
    ['Event-loop lag p99', formatMs(r.event_loop_lag_p99_ms)],
    ['Gossip delivery', `${formatPercent(gossip.delivery_ratio)} of ${gossip.samples} samples; ` +
      `latency p50 ${formatMs(gossip.latency_p50_ms)}, p99 ${formatMs(gossip.latency_p99_ms)}`],
    ['DHT lookup p50 / p99', `${formatMs(dht.lookup_p50_ms)} / ${formatMs(dht.lookup_p99_ms)} (${dht.samples} samples)`],
    ['Worker utilisation', formatPercent(r.worker_utilisation)],
    ['Failovers', String(jobs.failovers)]
  ]
}

function adversaryTable (r: SimResult): string {
  if (r.adversaries.length === 0) return '<p class="muted">No adversaries in this scenario.</p>'
  const rows = r.adversaries.map(a => {
    const gained = parseNanoton(a.gained_nanoton)
    const bound = parseNanoton(a.bound_nanoton)
    const over = gained != null && bound != null && gained > bound
    // kinds are snake_case: let them break after an underscore rather than mid-word
    return `<tr${over ? ' class="bad"' : ''}><td>${escapeHtml(a.kind).replace(/_/g, '_<wbr>')}</td>` +
      `<td><code title="${escapeHtml(a.peer)}">${escapeHtml(shortPeer(a.peer))}</code></td>` +
      `<td class="num">${escapeHtml(formatTon(a.gained_nanoton))}<br><span class="muted">of ${escapeHtml(formatTon(a.bound_nanoton))}</span>` +
      `${over ? '<br><strong>over the bound</strong>' : ''}</td>` +
      `<td class="num">${a.shunned_after_ms == null ? 'never' : escapeHtml(formatMs(a.shunned_after_ms))}</td>` +
      `<td>${escapeHtml(a.detail)}</td></tr>`
  }).join('')
  return '<table class="adversaries"><thead><tr><th scope="col">Kind</th><th scope="col">Peer</th><th scope="col">Gained / bound</th>' +
    `<th scope="col">Shunned after</th><th scope="col">Detail</th></tr></thead><tbody>${rows}</tbody></table>`
}

function eventTable (r: SimResult): string {
  if (r.events.length === 0) return '<p class="muted">No scenario events.</p>'
  const rows = r.events.map((e, i) =>
    `<tr><td class="num">${i + 1}</td><td class="num">${escapeHtml(formatDuration(e.t_ms))}</td>` +
    `<td class="kind"><span class="dot" style="background:${eventColor(e.kind)}"></span>${escapeHtml(e.kind)}</td><td>${escapeHtml(e.detail)}</td></tr>`).join('')
  return '<table><thead><tr><th scope="col">#</th><th scope="col">At</th><th scope="col">Kind</th><th scope="col">Detail</th></tr></thead>' +
    `<tbody>${rows}</tbody></table>`
}

const CSS = `
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#111827;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:20px}
header.top{display:flex;gap:20px;align-items:center;flex-wrap:wrap;background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:16px 20px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:15px;margin:0 0 8px}
.meta{margin:0;color:#374151}
.meta span{margin-right:14px;white-space:nowrap}
.badge{font-size:28px;font-weight:800;letter-spacing:.04em;padding:8px 22px;border-radius:10px;color:#fff}
.badge.ok{background:#15803d}
.badge.failed{background:#b91c1c}
.violations{margin:12px 0 0;padding:10px 14px 10px 30px;background:#fef2f2;border:1px solid #fecaca;border-radius:8px;color:#7f1d1d}
.held{margin:12px 0 0;color:#166534}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(520px,100%),1fr));gap:16px;margin-top:16px}
section.card{overflow-x:auto}
.stack{display:flex;flex-direction:column;gap:16px;min-width:0}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:10px;padding:14px 16px;margin:0;min-width:0}
.card svg[data-chart]{width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e5e7eb;vertical-align:top}
th{font-weight:600;color:#374151;background:#f9fafb}
td.num{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
tbody th{background:none;white-space:nowrap}
tr.bad td,tr.bad th{background:#fef2f2;color:#7f1d1d}
td.kind{white-space:nowrap}
table.adversaries code{overflow-wrap:anywhere}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.muted{color:#6b7280}
.legend{list-style:none;display:flex;flex-wrap:wrap;gap:4px 16px;margin:8px 0 0;padding:0;color:#374151;font-size:12px}
.legend li{display:flex;align-items:center;gap:6px}
.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px}
svg text{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
.tick{font-size:11px;fill:#4b5563}
.nodata{font-size:14px;fill:#9ca3af;font-style:italic}
.evlabel{font-size:11px;font-weight:600}
.group{font-size:12px;font-weight:700;fill:#111827}
.peer{font-size:11px;fill:#374151;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.val{font-size:11px;fill:#374151}
.adv{fill:#b91c1c;font-weight:700}
`

export function renderHtmlReport (result: SimResult): string {
  const r = result
  const { roles } = r
  const verdict = r.ok ? 'OK' : 'FAILED'
  const violations = r.violations.length === 0
    ? '<p class="held">All invariants held.</p>'
    : `<ul class="violations" aria-label="Violations">${r.violations.map(v => `<li>${escapeHtml(v)}</li>`).join('')}</ul>`
  const headline = headlineRows(r).map(([name, value, bad]) =>
    `<tr${bad === true ? ' class="bad"' : ''}><th scope="row">${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`).join('')
  const eventCaption = eventLegend(r.events)
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(`${verdict} — ${r.scenario} — Cocoon simulation`)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header class="top">
<div class="badge ${r.ok ? 'ok' : 'failed'}" role="status">${verdict}</div>
<div>
<h1>Scenario <code style="font-size:20px">${escapeHtml(r.scenario)}</code></h1>
<p class="meta"><span>seed <strong>${escapeHtml(String(r.seed))}</strong></span>` +
`<span><strong>${r.nodes}</strong> nodes: ${roles.bootstrap} bootstrap, ${roles.proxy} proxy, ${roles.worker} worker, ${roles.client} client</span>` +
`<span><strong>${r.processes}</strong> processes</span><span>ran <strong>${escapeHtml(formatDuration(r.duration_ms))}</strong></span></p>
</div>
<div style="flex-basis:100%">${violations}</div>
</header>
<div class="grid">
<section class="card"><h2>Headline figures</h2><table><tbody>${headline}</tbody></table></section>
${figure('Latency over time', latencyChart(r), legend([...LATENCY_LINES, ...eventCaption]))}
${figure('Success rate over time', successChart(r), legend([{ name: 'success rate (buckets with jobs)', color: '#047857' }, ...eventCaption]))}
${figure('Gossip propagation (CDF)', gossipChart(r), legend([{ name: 'share of deliveries within x', color: '#7c3aed' }]))}
${figure('Earnings per node', earningsChart(r), legend([
    { name: 'worker', color: '#2563eb', kind: 'bar' }, { name: 'proxy', color: '#0d9488', kind: 'bar' },
    { name: 'client (paid)', color: '#64748b', kind: 'bar' }, { name: '⚠ adversary', color: '#dc2626', kind: 'bar' }]))}
<div class="stack">
<section class="card"><h2>Adversaries</h2>${adversaryTable(r)}</section>
<section class="card"><h2>Scenario events</h2>${eventTable(r)}</section>
</div>
</div>
</main>
</body>
</html>
`
}

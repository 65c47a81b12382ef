/**
 * One-screen plain-text summary of a simulator run, for the terminal and CI
 * logs (at most SUMMARY_MAX_LINES lines of at most SUMMARY_MAX_COLUMNS columns).
 * The formatters are shared with the HTML report so both say the same thing.
 */
import type { SimResult } from './types.js'

export const SUMMARY_MAX_LINES = 30
export const SUMMARY_MAX_COLUMNS = 100

const NANO_PER_TON = 1_000_000_000n

/** Milliseconds for people: '850 ms', '1.25 s', '2m 05s'; 'n/a' for null or junk. */
export function formatMs (ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return 'n/a'
  const abs = Math.abs(ms)
  if (abs < 10) return `${ms.toFixed(1)} ms`
  if (abs < 1000) return `${Math.round(ms)} ms`
  if (abs < 60_000) return `${(ms / 1000).toFixed(2)} s`
  return formatDuration(ms)
}

/** A run length or offset: '45.0 s', '2m 05s', '1h 02m'. */
export function formatDuration (ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return 'n/a'
  const sign = ms < 0 ? '-' : ''
  const totalSeconds = Math.abs(ms) / 1000
  if (totalSeconds < 60) return `${sign}${totalSeconds.toFixed(1)} s`
  const seconds = Math.floor(totalSeconds) % 60
  const minutes = Math.floor(totalSeconds / 60) % 60
  const hours = Math.floor(totalSeconds / 3600)
  if (hours > 0) return `${sign}${hours}h ${String(minutes).padStart(2, '0')}m`
  return `${sign}${minutes}m ${String(seconds).padStart(2, '0')}s`
}

/** A 0..1 ratio as a percentage; two decimals just under 100 % so 99.96 % doesn't read as 100.0 %. */
export function formatPercent (ratio: number | null | undefined): string {
  if (ratio == null || !Number.isFinite(ratio)) return 'n/a'
  const digits = ratio >= 0.99 && ratio < 1 ? 2 : 1
  return `${(ratio * 100).toFixed(digits)} %`
}

/** Parses a nanoTON decimal string; null when it isn't one (the report must not throw on a bad result file). */
export function parseNanoton (nanoton: string): bigint | null {
  return /^-?\d+$/.test(nanoton.trim()) ? BigInt(nanoton.trim()) : null
}

/** Exact TON amount from nanoTON ('1.5 TON', '0.000001 TON'): money lines must add up to the last nanoTON. */
export function formatTon (nanoton: string): string {
  const value = parseNanoton(nanoton)
  if (value == null) return 'invalid amount'
  const negative = value < 0n
  const abs = negative ? -value : value
  const whole = abs / NANO_PER_TON
  const fraction = (abs % NANO_PER_TON).toString().padStart(9, '0').replace(/0+$/, '')
  return `${negative ? '-' : ''}${whole}${fraction === '' ? '' : `.${fraction}`} TON`
}

/** TON as a float, for scaling bars; 0 for an invalid amount. */
export function tonNumber (nanoton: string): number {
  const value = parseNanoton(nanoton)
  return value == null ? 0 : Number(value) / 1e9
}

/** Peer ids are long and alike at the start ('12D3KooW…'): keep enough of both ends to tell them apart. */
export function shortPeer (peer: string): string {
  return peer.length <= 20 ? peer : `${peer.slice(0, 10)}…${peer.slice(-6)}`
}

/** An offset in the run as m:ss, compact enough to list every event on one line. */
export function clock (ms: number): string {
  if (!Number.isFinite(ms)) return '?'
  const seconds = Math.max(0, Math.round(ms / 1000))
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, '0')}`
}

/** Control characters (newlines above all) from a result file would break the line budget. */
function clean (text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ')
}

function fit (line: string): string {
  const flat = clean(line).replace(/\s+$/, '')
  return flat.length <= SUMMARY_MAX_COLUMNS ? flat : `${flat.slice(0, SUMMARY_MAX_COLUMNS - 1)}…`
}

/** A list section: as many items as the line budget allows, then '… and N more'. */
function listLines (items: string[], budget: number): string[] {
  if (items.length <= budget) return items
  const shown = Math.max(budget - 1, 0)
  return [...items.slice(0, shown), `  … and ${items.length - shown} more`].slice(0, Math.max(budget, 0))
}

export function renderTextSummary (result: SimResult): string {
  const { roles, jobs, money, gossip, dht } = result
  const verdict = result.ok ? 'OK' : `FAILED (${result.violations.length} violation${result.violations.length === 1 ? '' : 's'})`
  const head: string[] = [
    `Cocoon simulation '${result.scenario}' seed ${result.seed}: ${verdict}`,
    `Nodes     ${result.nodes} in ${result.processes} process${result.processes === 1 ? '' : 'es'}: ` +
      `${roles.bootstrap} bootstrap, ${roles.proxy} proxy, ${roles.worker} worker, ${roles.client} client; ` +
      `ran ${formatDuration(result.duration_ms)}`,
    `Jobs      ${jobs.total} total, ${jobs.ok} ok, ${jobs.failed} failed, ${jobs.failovers} failovers; ` +
      `success ${formatPercent(result.success_rate)}`,
    `TTFT      p50 ${formatMs(result.ttft_p50_ms)}, p99 ${formatMs(result.ttft_p99_ms)}`,
    `Latency   p50 ${formatMs(result.latency_p50_ms)}, p99 ${formatMs(result.latency_p99_ms)}`,
    `Money     ${result.money_conserved ? 'conserved' : 'NOT CONSERVED'}: clients paid ${formatTon(money.clients_paid)}, ` +
      `workers earned ${formatTon(money.workers_earned)}, proxies kept ${formatTon(money.proxies_kept)}`,
    `Memory    ${result.rss_per_node_mib.toFixed(1)} MiB RSS per node; event-loop lag p99 ${formatMs(result.event_loop_lag_p99_ms)}; ` +
      `worker utilisation ${formatPercent(result.worker_utilisation)}`,
    `CPU       ${result.cpu_ms_per_node_s == null ? 'not measured' : `${result.cpu_ms_per_node_s.toFixed(2)} ms per node per second`} during the load; longest GC pause ${formatMs(result.gc_max_pause_ms)}`,
    `Gossip    delivery ${formatPercent(gossip.delivery_ratio)} of ${gossip.samples} samples; ` +
      `latency p50 ${formatMs(gossip.latency_p50_ms)}, p99 ${formatMs(gossip.latency_p99_ms)}`,
    `DHT       lookup p50 ${formatMs(dht.lookup_p50_ms)}, p99 ${formatMs(dht.lookup_p99_ms)} (${dht.samples} samples)`,
    ...(result.errors ?? []).slice(0, 2).map(e => `Errors    ${e.count}x ${e.reason}`),
    `Events    ${result.events.length}${result.events.length === 0
      ? ''
      : `: ${result.events.map(e => `${e.kind} @${clock(e.t_ms)}`).join(', ')}`}`
  ]

  const adversaries = result.adversaries.map(a =>
    `  ${a.kind} ${shortPeer(a.peer)}: gained ${formatTon(a.gained_nanoton)} of ${formatTon(a.bound_nanoton)} bound; ` +
    `shunned ${a.shunned_after_ms == null ? 'never' : `after ${formatMs(a.shunned_after_ms)}`}`)
  const violations = result.violations.map(v => `  - ${v}`)

  // violations matter most and take what is left after a few adversary lines
  let budget = SUMMARY_MAX_LINES - head.length
  const adversaryReserve = adversaries.length === 0 ? 1 : 1 + Math.min(adversaries.length, 3)
  const violationSection = violations.length === 0
    ? ['Violations: none']
    : ['Violations:', ...listLines(violations, Math.max(budget - adversaryReserve - 1, 1))]
  budget -= violationSection.length
  const adversarySection = adversaries.length === 0
    ? ['Adversaries: none']
    : [`Adversaries (${adversaries.length}):`, ...listLines(adversaries, Math.max(budget - 1, 0))]

  return [...head, ...adversarySection, ...violationSection].slice(0, SUMMARY_MAX_LINES).map(fit).join('\n') + '\n'
}

/**
 * What a simulator run reports: `simulations/results/<scenario>/result.json`
 * holds one SimResult; the HTML report and the text summary are rendered from it.
 * Field names in snake_case are the ones the scenario invariants and CI read.
 */

/** A timed scenario event as it happened (offset from the run's start). */
export interface SimEvent {
  t_ms: number
  /** e.g. 'worker_join', 'worker_leave', 'worker_crash', 'proxy_crash', 'partition', 'heal', 'adversary', 'slow_worker' */
  kind: string
  detail: string
}

/** One time bucket of client-observed jobs. */
export interface SimSeriesPoint {
  /** Bucket start, ms from the run's start. */
  t_ms: number
  jobs: number
  ok: number
  failed: number
  /** ok / jobs, 1 when jobs is 0. */
  success_rate: number
  /** null when the bucket has no successful job. */
  ttft_p50_ms: number | null
  ttft_p99_ms: number | null
  latency_p50_ms: number | null
  latency_p99_ms: number | null
  /** Worst event-loop lag p99 across host processes in this bucket. */
  event_loop_lag_p99_ms: number | null
}

export interface SimEarning {
  peer: string
  role: 'worker' | 'proxy' | 'client'
  /** nanoTON as a decimal string: earned (worker, proxy) or paid (client). */
  nanoton: string
  /** True for a node the scenario made an adversary. */
  adversary: boolean
}

export interface SimAdversary {
  /** e.g. 'forged_attestation', 'overstated_usage', 'stops_paying', 'capacity_spam' */
  kind: string
  peer: string
  /** What it got that it was not owed, nanoTON (decimal string); '0' when nothing. */
  gained_nanoton: string
  /** The most the protocol allows it to take (the credit window), nanoTON. */
  bound_nanoton: string
  /** ms from its first misbehaviour until honest nodes stopped dealing with it; null if never (or not applicable). */
  shunned_after_ms: number | null
  detail: string
}

export interface SimResult {
  scenario: string
  seed: number
  /** Total nodes started (all roles, all processes). */
  nodes: number
  roles: { bootstrap: number, proxy: number, worker: number, client: number }
  processes: number
  duration_ms: number
  /** Every invariant held. */
  ok: boolean
  /** Invariants that broke, in words (empty when ok). */
  violations: string[]
  success_rate: number
  jobs: { total: number, ok: number, failed: number, failovers: number }
  ttft_p50_ms: number | null
  ttft_p99_ms: number | null
  latency_p50_ms: number | null
  latency_p99_ms: number | null
  money_conserved: boolean
  money: { clients_paid: string, workers_earned: string, proxies_kept: string }
  rss_per_node_mib: number
  event_loop_lag_p99_ms: number
  /** CPU time per node during the load: the hosts' CPU (user + system) over wall time, summed, median over the load's seconds, divided by the nodes; ms of CPU per node per second. */
  cpu_ms_per_node_s: number | null
  /** The longest garbage-collection pause in any host during the load, ms. */
  gc_max_pause_ms: number
  gossip: { delivery_ratio: number, latency_p50_ms: number | null, latency_p99_ms: number | null, samples: number }
  dht: { lookup_p50_ms: number | null, lookup_p99_ms: number | null, samples: number }
  /** Gossip propagation: for each probe message, ms until it reached each receiver (for a CDF chart). */
  gossip_propagation_ms: number[]
  /** Time series of client-observed jobs, bucketed (see SimSeriesPoint). */
  series: SimSeriesPoint[]
  events: SimEvent[]
  earnings: SimEarning[]
  adversaries: SimAdversary[]
  /** Worker utilisation: busy slot-seconds / offered slot-seconds over the run, 0..1. */
  worker_utilisation: number
  /**
   * Gossip accepted per node per second during the load, by receiving role and
   * topic family (e.g. "proxy capacity": the announcement load per proxy);
   * payload bytes, not wire bytes.
   */
  gossip_per_node?: Record<string, { messages_per_s: number, bytes_per_s: number }>
  /** How long the measured load ran (the time axis of `series` and `events`). */
  load_ms?: number
  /** ms from the first node's start until every proxy knew every worker. */
  formed_ms?: number
  /** The unmeasured requests sent before the load (they open payment channels). */
  warmup?: { ms: number, ok: number, failed: number }
  /** Why requests failed, most frequent first (peer ids and numbers folded). */
  errors?: Array<{ reason: string, count: number }>
}

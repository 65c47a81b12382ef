/**
 * Cocoon's own Prometheus metrics, registered next to libp2p's in the node's
 * registry. Each in-process node has its own registry, so many nodes can
 * share a process (tests, the simulator) without clobbering each other.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client'

export class NodeMetrics {
  readonly registry: Registry
  readonly gossipValidation: Counter<'topic' | 'result' | 'reason'>
  readonly protocolErrors: Counter<'protocol' | 'code'>
  readonly knownPeers: Gauge<'role'>
  readonly up: Gauge
  readonly attestations: Counter<'kind' | 'result' | 'reason'>
  readonly attestationSeconds: Histogram<'kind'>
  readonly registryWorkers: Gauge<'state'>
  readonly jobs: Counter<'side' | 'model' | 'result'>
  readonly jobSeconds: Histogram<'side' | 'phase'>
  readonly jobTokens: Counter<'side' | 'model' | 'kind'>
  readonly jobsInFlight: Gauge<'side'>
  readonly queueWait: Histogram<'side' | 'outcome'>
  readonly queueLength: Gauge<'side'>
  /** Requests waiting in each side's admission queue (client, proxy), read when metrics are scraped. */
  queueLengths: Partial<Record<'client' | 'proxy', () => number>> = {}
  /** Counts of known peers by role, read when metrics are scraped. */
  knownPeersByRole: () => Record<string, number> = () => ({})
  /** Worker registry size by state (proxies), read when metrics are scraped. */
  registryByState: () => Record<string, number> = () => ({})
  /** Open and closing payment channels (settling nodes), read when metrics are scraped. */
  channels: () => ChannelGaugeRow[] = () => []
  readonly channelNanoTon: Gauge<'side' | 'peer' | 'channel' | 'kind'>

  constructor (registry: Registry = new Registry()) {
    this.registry = registry
    this.gossipValidation = new Counter({
      name: 'cocoon_gossip_validation_total',
      help: 'Gossip messages validated, by topic, result (accept/ignore/reject) and reason',
      labelNames: ['topic', 'result', 'reason'],
      registers: [registry]
    })
    this.protocolErrors = new Counter({
      name: 'cocoon_protocol_errors_total',
      help: 'Inbound protocol requests answered with an error, by protocol and error code',
      labelNames: ['protocol', 'code'],
      registers: [registry]
    })
    const metrics = this
    this.knownPeers = new Gauge({
      name: 'cocoon_known_peers',
      help: 'Cocoon peers in the directory, by role',
      labelNames: ['role'],
      registers: [registry],
      // computed per scrape, not per gossip message
      collect () {
        this.reset()
        for (const [role, count] of Object.entries(metrics.knownPeersByRole())) this.set({ role }, count)
      }
    })
    this.attestations = new Counter({
      name: 'cocoon_attestations_total',
      help: 'Peer attestations checked, by evidence kind, result (verified/refused/unreachable) and reason',
      labelNames: ['kind', 'result', 'reason'],
      registers: [registry]
    })
    this.attestationSeconds = new Histogram({
      name: 'cocoon_attestation_verify_seconds',
      help: 'Time to verify a peer\'s evidence (quote, binding, policy), by kind',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [registry]
    })
    this.registryWorkers = new Gauge({
      name: 'cocoon_registry_workers',
      help: 'Workers in the proxy\'s registry, by state (up/down)',
      labelNames: ['state'],
      registers: [registry],
      collect () {
        this.reset()
        for (const [state, count] of Object.entries(metrics.registryByState())) this.set({ state }, count)
      }
    })
    this.jobs = new Counter({
      name: 'cocoon_jobs_total',
      help: 'Inference jobs ended, by side (client/proxy/worker), model and result (ok or an error code)',
      labelNames: ['side', 'model', 'result'],
      registers: [registry]
    })
    this.jobSeconds = new Histogram({
      name: 'cocoon_job_seconds',
      help: 'Inference job timings by side and phase (first_chunk, total)',
      labelNames: ['side', 'phase'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry]
    })
    this.jobTokens = new Counter({
      name: 'cocoon_job_tokens_total',
      help: 'Tokens in finished jobs by side, model and kind (prompt/completion)',
      labelNames: ['side', 'model', 'kind'],
      registers: [registry]
    })
    this.jobsInFlight = new Gauge({
      name: 'cocoon_jobs_in_flight',
      help: 'Inference jobs running now, by side',
      labelNames: ['side'],
      registers: [registry]
    })
    this.queueWait = new Histogram({
      name: 'cocoon_queue_wait_seconds',
      help: 'Time a request waited in an admission queue for a free slot, by side (client, proxy) and outcome (admitted, full, timeout, aborted)',
      labelNames: ['side', 'outcome'],
      buckets: [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry]
    })
    this.queueLength = new Gauge({
      name: 'cocoon_queue_length',
      help: 'Requests waiting in an admission queue now, by side',
      labelNames: ['side'],
      registers: [registry],
      collect () {
        this.reset()
        for (const [side, length] of Object.entries(metrics.queueLengths)) this.set({ side }, length())
      }
    })
    this.channelNanoTon = new Gauge({
      name: 'cocoon_channel_nanoton',
      help: 'Payment channels not yet closed, by side (payer/payee), peer, channel and kind (deposited, cumulative signed, countersigned, unpaid: delivered to the payer and not yet paid)',
      labelNames: ['side', 'peer', 'channel', 'kind'],
      registers: [registry],
      collect () {
        this.reset()
        for (const row of metrics.channels()) {
          const labels = { side: row.side, peer: row.peer, channel: row.channel }
          this.set({ ...labels, kind: 'deposited' }, Number(row.deposited))
          this.set({ ...labels, kind: 'cumulative' }, Number(row.cumulative))
          this.set({ ...labels, kind: 'countersigned' }, Number(row.countersigned))
          if (row.unpaid != null) this.set({ ...labels, kind: 'unpaid' }, Number(row.unpaid))
        }
      }
    })
    this.up = new Gauge({
      name: 'cocoon_node_up',
      help: '1 while the node is running',
      registers: [registry]
    })
  }

  /**
   * Reports an admission queue on `side`: its length when metrics are
   * scraped, and (through the returned callback) each request's wait and
   * how it ended.
   */
  observeQueue (side: 'client' | 'proxy', length: () => number): (waitedMs: number, outcome: string) => void {
    this.queueLengths[side] = length
    return (waitedMs, outcome) => { this.queueWait.observe({ side, outcome }, waitedMs / 1000) }
  }
}

/** One channel's amounts for the gauges, nanoTON. */
export interface ChannelGaugeRow {
  side: string
  peer: string
  channel: string
  deposited: bigint
  cumulative: bigint
  countersigned: bigint
  /** payee side: what was delivered on the channel and not yet paid */
  unpaid?: bigint
}

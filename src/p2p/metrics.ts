/**
 * Cocoon's own Prometheus metrics, registered next to libp2p's in the node's
 * registry. Each in-process node has its own registry, so many nodes can
 * share a process (tests, the simulator) without clobbering each other.
 */
import { Counter, Gauge, Registry } from 'prom-client'

export class NodeMetrics {
  readonly registry: Registry
  readonly gossipValidation: Counter<'topic' | 'result' | 'reason'>
  readonly protocolErrors: Counter<'protocol' | 'code'>
  readonly knownPeers: Gauge<'role'>
  readonly lifecycle: Gauge<'state'>

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
    this.knownPeers = new Gauge({
      name: 'cocoon_known_peers',
      help: 'Cocoon peers in the directory, by role',
      labelNames: ['role'],
      registers: [registry]
    })
    this.lifecycle = new Gauge({
      name: 'cocoon_node_up',
      help: '1 while the node is running',
      labelNames: ['state'],
      registers: [registry]
    })
  }
}

/**
 * The one libp2p node factory every role is built on: TCP and WebSockets,
 * noise, yamux, identify, ping, the private Cocoon Kademlia DHT, gossipsub,
 * bootstrap discovery, a relay server where asked, and on the public network
 * the Amino DHT (rendezvous only), relay reservations, hole punching and
 * AutoNAT.
 */
import '../polyfills.js'
import { autoNAT } from '@libp2p/autonat'
import { bootstrap } from '@libp2p/bootstrap'
import { circuitRelayServer, circuitRelayTransport } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import { identify, identifyPush } from '@libp2p/identify'
import { kadDHT, passthroughMapper, removePrivateAddressesMapper } from '@libp2p/kad-dht'
import { noise } from '@libp2p/noise'
import { ping } from '@libp2p/ping'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { tcp } from '@libp2p/tcp'
import { isLoopback, isPrivate } from '@libp2p/utils'
import { webSockets } from '@libp2p/websockets'
import { yamux } from '@libp2p/yamux'
import { KEEP_ALIVE } from '@libp2p/interface'
import { createLibp2p } from 'libp2p'
import {
  ADDRESS_DIAL_TIMEOUT_MS, AMINO_KAD_PROTOCOL, COCOON_KAD_PROTOCOL, CONNECTION_PING_INTERVAL_MS, CONNECTION_PING_MIN_TIMEOUT_MS, DHT_CLIENT_QUERY_SELF_INTERVAL_MS, DHT_PROVIDE_VALIDITY_MS,
  DHT_REPROVIDE_INTERVAL_MS, DHT_REPROVIDE_THRESHOLD_MS, DIAL_TIMEOUT_MS, PING_MAX_STREAMS, YAMUX_KEEPALIVE_MS
} from './constants.js'
import { cocoonGossipsub } from './gossip.js'
import { quietDhtClient } from './dht-client.js'
import { AMINO_BOOTSTRAP_PEERS, NETWORK_PRESETS } from './networks.js'
import { installLengthPrefixFastPath } from './length-prefix.js'
import { installYamuxWindowHysteresis } from './yamux-window.js'
import type { GossipSub } from './gossip.js'
import type { AddressFilter, NetworkId } from './networks.js'
import type { Identify, IdentifyPush } from '@libp2p/identify'
import type { ComponentLogger, Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import type { ServiceFactoryMap } from 'libp2p'
import type { KadDHT } from '@libp2p/kad-dht'
import type { Ping } from '@libp2p/ping'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Registry } from 'prom-client'

export interface CocoonServices extends Record<string, unknown> {
  identify: Identify
  identifyPush: IdentifyPush
  ping: Ping
  dht: KadDHT
  pubsub: GossipSub
  /** Present on public-network nodes only. */
  amino?: KadDHT
  relay?: unknown
  autoNAT?: unknown
  dcutr?: unknown
}

export type CocoonLibp2p = Libp2p<CocoonServices>

export interface CocoonNodeInit {
  privateKey: PrivateKey
  network: NetworkId
  /** Multiaddrs to listen on. */
  listen: string[]
  /** Multiaddrs to announce instead of the listen addresses (e.g. behind port forwarding). */
  announce?: string[]
  /** Cocoon bootstrap peers (multiaddrs with /p2p/). */
  bootstrap: string[]
  /** Amino bootstrap peers for the public network; defaults to the well-known list. */
  aminoBootstrap?: string[]
  /** Answer DHT queries (bootstrap, proxy, worker) or only ask them (client). */
  dhtServer: boolean
  /** Serve circuit-relay reservations for nodes behind NAT (bootstrap nodes). */
  relayServer: boolean
  /** Which addresses enter the DHTs; `all` keeps loopback/LAN addresses. */
  addressFilter: AddressFilter
  /** Collect libp2p metrics into this registry (one registry per node). */
  metricsRegistry?: Registry
  /** Component logger, e.g. prefixLogger per in-process node. */
  logger?: ComponentLogger
  /** Agent version sent in identify. */
  userAgent?: string
  /** Connection limit. */
  maxConnections?: number
  /**
   * Refuse to dial or accept these peers (checked on every connection, so it
   * may change while the node runs: the simulator partitions networks with it).
   */
  denyPeer?: (peerId: string) => boolean
}

/** The peer-store tag on bootstrap peers; its `keep-alive` prefix makes libp2p re-dial them when they drop. */
export const BOOTSTRAP_KEEP_ALIVE_TAG = `${KEEP_ALIVE}-cocoon-bootstrap`

const LOOPBACK_ALLOW = ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']

export async function createCocoonNode (init: CocoonNodeInit): Promise<CocoonLibp2p> {
  installYamuxWindowHysteresis()
  installLengthPrefixFastPath()
  const preset = NETWORK_PRESETS[init.network]
  const keepPrivate = init.addressFilter === 'all'
  const mapper = keepPrivate ? passthroughMapper : removePrivateAddressesMapper
  const bootstrapList = [...init.bootstrap]
  if (preset.amino) {
    bootstrapList.push(...(init.aminoBootstrap ?? AMINO_BOOTSTRAP_PEERS))
  }

  const services: ServiceFactoryMap<CocoonServices> = {
    identify: identify(),
    identifyPush: identifyPush(),
    // The connection monitor and the DHT both ping; with libp2p's default of
    // one outbound ping stream per connection the second ping fails and the
    // monitor aborts a healthy connection.
    ping: ping({ maxInboundStreams: PING_MAX_STREAMS, maxOutboundStreams: PING_MAX_STREAMS }),
    dht: kadDHT({
      protocol: COCOON_KAD_PROTOCOL,
      clientMode: !init.dhtServer,
      peerInfoMapper: mapper,
      logPrefix: 'cocoon:kad',
      datastorePrefix: '/cocoon-dht',
      metricsPrefix: 'cocoon_kad',
      initialQuerySelfInterval: 500,
      // a server keeps its neighbourhood fresh; a client (worker, client) only
      // needs servers to ask, which its first query found: an hourly self-query
      // instead of one every 5 min spares the servers a query per client per
      // 5 min (975 of them in a 1 000-node swarm)
      ...(init.dhtServer ? {} : { querySelfInterval: DHT_CLIENT_QUERY_SELF_INTERVAL_MS }),
      providers: { provideValidity: DHT_PROVIDE_VALIDITY_MS / 1000 },
      reprovide: {
        validity: DHT_PROVIDE_VALIDITY_MS,
        threshold: DHT_REPROVIDE_THRESHOLD_MS,
        interval: DHT_REPROVIDE_INTERVAL_MS
      }
    }),
    pubsub: cocoonGossipsub({
      colocationWhitelist: keepPrivate ? ['127.0.0.1', '::1'] : []
    })
  }
  if (preset.amino) {
    // Only a client of the public DHT: we publish and look up one rendezvous
    // record there and never serve the IPFS network's queries.
    services.amino = kadDHT({
      protocol: AMINO_KAD_PROTOCOL,
      clientMode: true,
      peerInfoMapper: mapper,
      logPrefix: 'cocoon:amino',
      datastorePrefix: '/amino-dht',
      metricsPrefix: 'cocoon_amino'
    })
  }
  if (init.relayServer) {
    services.relay = circuitRelayServer({ reservations: { maxReservations: 128 } })
  }
  if (preset.natTraversal) {
    services.autoNAT = autoNAT()
    services.dcutr = dcutr()
  }

  const node = await createLibp2p({
    privateKey: init.privateKey,
    nodeInfo: init.userAgent == null ? undefined : { userAgent: init.userAgent },
    addresses: {
      listen: init.listen,
      announce: init.announce ?? []
    },
    transports: [
      tcp(),
      webSockets(),
      ...(preset.natTraversal ? [circuitRelayTransport()] : [])
    ],
    connectionEncrypters: [noise()],
    // yamux pings every connection every 30 s by default, only to measure the
    // round trip (it ignores a ping that fails); the connection monitor's
    // pings already find dead connections, so one yamux ping at open (the
    // round trip its window growth uses) and a slow refresh are enough
    streamMuxers: [yamux({ keepAliveInterval: YAMUX_KEEPALIVE_MS })],
    // bootstrap peers are kept connected: libp2p re-dials one at once when its
    // connection drops (DHT clients no longer get that from kad-dht's tag on
    // their closest peers, see dht-client.ts); BootstrapRedial stays the
    // backstop once libp2p's retries give up
    peerDiscovery: bootstrapList.length > 0 ? [bootstrap({ list: bootstrapList, timeout: 100, tagName: BOOTSTRAP_KEEP_ALIVE_TAG })] : [],
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      addressDialTimeout: ADDRESS_DIAL_TIMEOUT_MS,
      dialTimeout: DIAL_TIMEOUT_MS,
      // everything on loopback shares one IP; don't rate-limit a local swarm
      allow: keepPrivate ? LOOPBACK_ALLOW : []
    },
    // Liveness pings every 10 s on every connection were half of all socket
    // writes in a 100-node swarm; dead peers are found by the streams that use
    // them, so a slow keep-alive is enough to drop half-open connections.
    // A ping that fails aborts the connection. libp2p allows a ping at least
    // 5 s; a loaded node (a proxy while hundreds of workers join) answers a
    // new ping stream slower than that, and aborting its links then made the
    // workers dial again into the same overload (a 1 000-node simulation lost
    // connections at 112 a second and left 130 nodes with none). A dead peer
    // is still dropped, a little later.
    connectionMonitor: { pingInterval: CONNECTION_PING_INTERVAL_MS, pingTimeout: { minTimeout: CONNECTION_PING_MIN_TIMEOUT_MS } },
    connectionGater: {
      // On the public network never dial private or loopback addresses that
      // peers hand us: that would let anyone scan the operator's LAN.
      denyDialMultiaddr: (ma: Multiaddr) => !keepPrivate && (isPrivate(ma) || isLoopback(ma)),
      ...(init.denyPeer == null
        ? {}
        : {
            denyDialPeer: (peer: PeerId) => init.denyPeer?.(peer.toString()) ?? false,
            denyInboundEncryptedConnection: (peer: PeerId) => init.denyPeer?.(peer.toString()) ?? false,
            denyOutboundEncryptedConnection: (peer: PeerId) => init.denyPeer?.(peer.toString()) ?? false
          })
    },
    // prometheus-metrics caches metric objects in a module-global map; with
    // preserveExistingMetrics a second in-process node would reuse the first
    // node's metrics and its own registry would stay empty. Clearing gives each
    // node fresh metrics in its own registry (prom-client's global registry,
    // which it also clears, is not used here).
    metrics: init.metricsRegistry == null
      ? undefined
      : prometheusMetrics({ registry: init.metricsRegistry, preserveExistingMetrics: false, collectDefaultMetrics: true }),
    logger: init.logger,
    services,
    start: false
  })
  if (!init.dhtServer && !quietDhtClient(node.services.dht, DHT_CLIENT_QUERY_SELF_INTERVAL_MS)) {
    node.logger.forComponent('cocoon:node').error('kad-dht internals changed: this DHT client keeps its closest peers connected and refreshes its table every 5 min')
  }
  await node.start()
  return node as unknown as CocoonLibp2p
}

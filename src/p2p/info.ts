/**
 * /cocoon/info/1.0.0: ask a peer who it is (role, network, version, addresses,
 * topics; a proxy adds how many workers it lists). Served by every node; used
 * when a peer connects so its role is known before its first presence
 * heartbeat, and by workers (which take no presence) to learn the proxies
 * they meet and the swarm's size.
 */
import { multiaddr } from '@multiformats/multiaddr'
import { INFO_DEADLINE_MS, INFO_MAX_FRAME_BYTES, INFO_PROTOCOL } from './constants.js'
import { handleRequests, request } from './framing.js'
import { InfoRequest, NodeInfo, Role } from '../gen/node.pb.js'
import type { ProtocolHost } from './framing.js'
import type { NodeMetrics } from './metrics.js'
import type { PeerDirectory } from './peer-directory.js'
import type { AbortOptions, IdentifyResult, Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export { NodeInfo }

export interface InfoHost extends ProtocolHost {
  getMultiaddrs(): Multiaddr[]
  unhandle(protocol: string): Promise<void>
  addEventListener(type: 'peer:identify', listener: (evt: CustomEvent<IdentifyResult>) => void): void
  removeEventListener(type: 'peer:identify', listener: (evt: CustomEvent<IdentifyResult>) => void): void
  services: { pubsub: { getTopics(): string[] } }
}

export interface InfoInit {
  role: Role
  network: string
  version: string
  startedAtMs: number
  /** A proxy's count of the workers it lists (undefined for other roles). */
  workers?: () => number | undefined
  log: Logger
  metrics?: NodeMetrics
}

export class InfoService {
  private readonly host: InfoHost
  private readonly directory: PeerDirectory
  private readonly init: InfoInit
  private readonly onIdentify = (evt: CustomEvent<IdentifyResult>): void => {
    const { peerId, protocols } = evt.detail
    if (!protocols.includes(INFO_PROTOCOL) || this.directory.get(peerId.toString()) != null) return
    this.learn(peerId).catch(err => { this.init.log('info from %p failed - %s', peerId, (err as Error).message) })
  }

  constructor (host: InfoHost, directory: PeerDirectory, init: InfoInit) {
    this.host = host
    this.directory = directory
    this.init = init
  }

  async start (): Promise<void> {
    await handleRequests(this.host, {
      protocol: INFO_PROTOCOL,
      maxFrameBytes: INFO_MAX_FRAME_BYTES,
      deadlineMs: INFO_DEADLINE_MS,
      request: InfoRequest,
      response: NodeInfo,
      log: this.init.log,
      // a few hundred bytes: fine on a relayed connection, where a NAT'd peer may only be reachable
      runOnLimitedConnection: true,
      onError: (code) => { this.init.metrics?.protocolErrors.inc({ protocol: INFO_PROTOCOL, code }) },
      handler: async (req) => this.describe(req.nonce)
    })
    this.host.addEventListener('peer:identify', this.onIdentify)
  }

  async stop (): Promise<void> {
    this.host.removeEventListener('peer:identify', this.onIdentify)
    await this.host.unhandle(INFO_PROTOCOL)
  }

  describe (nonce = 0n): NodeInfo {
    return {
      nonce,
      role: this.init.role,
      network: this.init.network,
      version: this.init.version,
      addrs: this.host.getMultiaddrs().slice(0, 32).map(ma => ma.bytes),
      startedAtMs: BigInt(this.init.startedAtMs),
      topics: this.host.services.pubsub.getTopics(),
      workers: this.init.workers?.() ?? 0
    }
  }

  /** Asks `peer` for its info. */
  async fetch (peer: PeerId | Multiaddr, options: AbortOptions = {}): Promise<NodeInfo> {
    const nonce = BigInt(Math.floor(Math.random() * Number.MAX_SAFE_INTEGER))
    const info = await request(this.host, peer, INFO_PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce }, {
      ...options,
      maxFrameBytes: INFO_MAX_FRAME_BYTES,
      deadlineMs: INFO_DEADLINE_MS,
      runOnLimitedConnection: true
    })
    if (info.nonce !== nonce) {
      throw new Error(`${INFO_PROTOCOL}: answer does not echo our nonce`)
    }
    return info
  }

  /**
   * Asks a known peer again and updates its record (a worker keeps its
   * proxies' worker counts current this way).
   */
  async refresh (peerId: PeerId, options: AbortOptions = {}): Promise<void> {
    this.record(peerId, await this.fetch(peerId, options))
  }

  private async learn (peerId: PeerId): Promise<void> {
    const info = await this.fetch(peerId)
    if (this.directory.get(peerId.toString()) != null) return
    this.record(peerId, info)
  }

  private record (peerId: PeerId, info: NodeInfo): void {
    const known = this.directory.get(peerId.toString())
    // a presence record is signed and sequenced: info does not replace it
    if (known?.source === 'presence') return
    this.directory.upsert({
      peerId: peerId.toString(),
      role: info.role,
      network: info.network,
      version: info.version,
      addrs: info.addrs.flatMap(bytes => { try { return [multiaddr(bytes).toString()] } catch { return [] } }),
      seq: 0n,
      source: 'info',
      ...(info.role === Role.PROXY ? { workers: info.workers } : {})
    })
  }
}

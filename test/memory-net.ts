/** Hosts that reach each other through in-memory stream pairs (no network), for unit tests of protocol services. */
import { streamPair } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'

type Handler = (stream: Stream, connection: Connection) => void | Promise<void>

/** Hosts that reach each other through in-memory stream pairs; a crashed host is unreachable and its streams reset. */
export class MemoryNet {
  readonly hosts = new Map<string, MemoryHost>()

  add (peerId: PeerId): MemoryHost {
    const host = new MemoryHost(this, peerId)
    this.hosts.set(peerId.toString(), host)
    return host
  }
}

export class MemoryHost {
  readonly peerId: PeerId
  private readonly net: MemoryNet
  private readonly handlers = new Map<string, Handler>()
  private readonly streams = new Set<Stream>()
  down = false

  constructor (net: MemoryNet, peerId: PeerId) {
    this.net = net
    this.peerId = peerId
  }

  async handle (protocol: string, handler: Handler): Promise<void> {
    this.handlers.set(protocol, handler)
  }

  async unhandle (protocol: string): Promise<void> {
    this.handlers.delete(protocol)
  }

  async dialProtocol (peer: PeerId, protocol: string): Promise<Stream> {
    const target = this.net.hosts.get(peer.toString())
    if (target == null || target.down) throw new Error(`${peer.toString()} cannot be reached`)
    const handler = target.handlers.get(protocol)
    if (handler == null) throw new Error(`${peer.toString()} does not speak ${protocol}`)
    const [outbound, inbound] = await streamPair({ protocol })
    this.streams.add(outbound)
    target.streams.add(inbound)
    void Promise.resolve(handler(inbound, { remotePeer: this.peerId } as unknown as Connection)).catch(() => {})
    return outbound
  }

  crash (): void {
    this.down = true
    for (const s of this.streams) s.abort(new Error('crashed'))
  }
}

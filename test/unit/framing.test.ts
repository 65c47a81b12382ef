import '../../src/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import { expect } from 'chai'
import * as varint from 'uint8-varint'
import { DeadlineError, FrameTooLargeError, MalformedMessageError, RemoteError, StreamClosedError } from '../../src/errors.js'
import { ErrorCode, FramedStream, ProtocolError, handleRequests, request } from '../../src/p2p/framing.js'
import { InfoRequest, NodeInfo, Role } from '../../src/gen/node.pb.js'
import type { Connection, PeerId, Stream } from '@libp2p/interface'

const PROTOCOL = '/cocoon/test/1.0.0'
const MAX = 256

/** A host whose dialProtocol returns one side of an in-memory pair and hands the other to the registered handler. */
async function pairHost (remotePeer: PeerId): Promise<{
  handle: (p: string, h: (s: Stream, c: Connection) => void | Promise<void>) => Promise<void>
  dialProtocol: () => Promise<Stream>
  served: () => Promise<void>
}> {
  let handler: ((s: Stream, c: Connection) => void | Promise<void>) | undefined
  const running: Array<Promise<void>> = []
  return {
    handle: async (_p, h) => { handler = h },
    dialProtocol: async () => {
      const [outbound, inbound] = await streamPair({ protocol: PROTOCOL })
      running.push(Promise.resolve(handler?.(inbound, { remotePeer } as unknown as Connection)))
      return outbound
    },
    served: async () => { await Promise.all(running) }
  }
}

function rawFrame (payload: Uint8Array): Uint8Array {
  const prefix = varint.encode(payload.byteLength)
  const out = new Uint8Array(prefix.byteLength + payload.byteLength)
  out.set(prefix, 0)
  out.set(payload, prefix.byteLength)
  return out
}

describe('protocol framing', () => {
  let peer: PeerId
  before(async () => { peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')) })

  async function serve (handler: (req: InfoRequest) => Promise<Partial<NodeInfo>>, errors: ErrorCode[] = []): Promise<Awaited<ReturnType<typeof pairHost>>> {
    const host = await pairHost(peer)
    await handleRequests(host, {
      protocol: PROTOCOL,
      maxFrameBytes: MAX,
      deadlineMs: 300,
      request: InfoRequest,
      response: NodeInfo,
      handler,
      onError: code => { errors.push(code) }
    })
    return host
  }

  it('answers a request with the handler response', async () => {
    const host = await serve(async req => ({ nonce: req.nonce, role: Role.PROXY, network: 'local' }))
    const info = await request(host, peer, PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce: 42n }, { maxFrameBytes: MAX })
    expect(info.nonce).to.equal(42n)
    expect(info.role).to.equal(Role.PROXY)
    expect(info.network).to.equal('local')
  })

  it('answers an oversized frame with TOO_LARGE and keeps serving', async () => {
    const errors: ErrorCode[] = []
    const host = await serve(async req => ({ nonce: req.nonce }), errors)
    const stream = await host.dialProtocol()
    stream.send(rawFrame(new Uint8Array(MAX + 1)))
    const framed = new FramedStream(stream, { protocol: PROTOCOL, maxFrameBytes: MAX })
    const err = await framed.read(NodeInfo).catch(e => e)
    expect(err).to.be.instanceOf(RemoteError)
    expect((err as RemoteError).remoteCode).to.equal(ErrorCode.TOO_LARGE)
    await host.served()
    expect(errors).to.deep.equal([ErrorCode.TOO_LARGE])
    const info = await request(host, peer, PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce: 7n }, { maxFrameBytes: MAX })
    expect(info.nonce).to.equal(7n)
  })

  it('answers bytes that are not a frame envelope with BAD_REQUEST', async () => {
    const errors: ErrorCode[] = []
    const host = await serve(async req => ({ nonce: req.nonce }), errors)
    const stream = await host.dialProtocol()
    // field 1 declared as length-delimited with a length past the end: not protobuf
    stream.send(rawFrame(Uint8Array.from([0x0a, 0x7f, 0x01])))
    const err = await new FramedStream(stream, { protocol: PROTOCOL, maxFrameBytes: MAX }).read(NodeInfo).catch(e => e)
    expect(err).to.be.instanceOf(RemoteError)
    expect((err as RemoteError).remoteCode).to.equal(ErrorCode.BAD_REQUEST)
    await host.served()
    expect(errors).to.deep.equal([ErrorCode.BAD_REQUEST])
  })

  it('answers a request that never arrives with TIMEOUT after the deadline', async () => {
    const errors: ErrorCode[] = []
    const host = await serve(async req => ({ nonce: req.nonce }), errors)
    const stream = await host.dialProtocol()
    const started = Date.now()
    const err = await new FramedStream(stream, { protocol: PROTOCOL, maxFrameBytes: MAX, deadlineMs: 2_000 }).read(NodeInfo).catch(e => e)
    expect((err as RemoteError).remoteCode).to.equal(ErrorCode.TIMEOUT)
    expect(Date.now() - started).to.be.within(250, 1_500)
    expect(errors).to.deep.equal([ErrorCode.TIMEOUT])
    // the idle peer never closes its side: the server resets the stream rather than leave it half-open
    await host.served()
    expect(Date.now() - started, 'ended within the deadline and the grace after the answer').to.be.below(300 + 1_000 + 500)
    const endBy = Date.now() + 1_000
    while (stream.status === 'open' && Date.now() < endBy) await new Promise(resolve => setTimeout(resolve, 10))
    expect(stream.status, 'the stream is over on the idle peer\'s side too').to.not.equal('open')
  })

  it('passes a handler ProtocolError code to the caller, and hides internal errors', async () => {
    const overloaded = await serve(async () => { throw new ProtocolError(ErrorCode.OVERLOADED, 'busy', 250) })
    const err = await request(overloaded, peer, PROTOCOL, { request: InfoRequest, response: NodeInfo }, {}, { maxFrameBytes: MAX }).catch(e => e)
    expect(err).to.be.instanceOf(RemoteError)
    expect((err as RemoteError).remoteCode).to.equal(ErrorCode.OVERLOADED)
    expect((err as RemoteError).retryAfterMs).to.equal(250)

    const broken = await serve(async () => { throw new Error('secret database path /var/x') })
    const err2 = await request(broken, peer, PROTOCOL, { request: InfoRequest, response: NodeInfo }, {}, { maxFrameBytes: MAX }).catch(e => e)
    expect((err2 as RemoteError).remoteCode).to.equal(ErrorCode.INTERNAL)
    expect((err2 as RemoteError).message).to.not.include('secret')
  })

  it('raises typed errors on the reading side', async () => {
    const [a, b] = await streamPair()
    const reader = new FramedStream(b, { protocol: PROTOCOL, maxFrameBytes: MAX, deadlineMs: 100 })
    expect(await reader.read(NodeInfo).catch(e => e)).to.be.instanceOf(DeadlineError)

    a.send(rawFrame(new Uint8Array(MAX + 10)))
    expect(await reader.read(NodeInfo).catch(e => e)).to.be.instanceOf(FrameTooLargeError)

    const [c, d] = await streamPair()
    const reader2 = new FramedStream(d, { protocol: PROTOCOL, maxFrameBytes: MAX })
    // a valid envelope whose payload is not a NodeInfo (field 2 as a length-delimited blob)
    const writer = new FramedStream(c, { protocol: PROTOCOL, maxFrameBytes: MAX })
    await writer.write({ encode: (m: Partial<{ raw: Uint8Array<ArrayBuffer> }>) => m.raw ?? new Uint8Array(), decode: () => ({ raw: new Uint8Array() }) }, { raw: Uint8Array.from([0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) })
    expect(await reader2.read(NodeInfo).catch(e => e)).to.be.instanceOf(MalformedMessageError)
  })

  it('tells a clean end between frames from a stream cut mid-frame', async () => {
    const [a, b] = await streamPair()
    const writer = new FramedStream(a, { protocol: PROTOCOL, maxFrameBytes: MAX })
    const reader = new FramedStream(b, { protocol: PROTOCOL, maxFrameBytes: MAX })
    await writer.write(InfoRequest, { nonce: 1n })
    await writer.write(InfoRequest, { nonce: 2n })
    await writer.close()
    const seen: bigint[] = []
    for await (const m of reader.messages(InfoRequest)) seen.push(m.nonce)
    expect(seen).to.deep.equal([1n, 2n])

    const [c, d] = await streamPair()
    const cut = new FramedStream(d, { protocol: PROTOCOL, maxFrameBytes: MAX })
    c.send(Uint8Array.from([20, 1, 2, 3]))
    await c.close()
    expect(await cut.read(InfoRequest).catch(e => e)).to.be.instanceOf(StreamClosedError)
  })

  it('refuses to send a frame over the maximum', async () => {
    const [a] = await streamPair()
    const writer = new FramedStream(a, { protocol: PROTOCOL, maxFrameBytes: 32 })
    const err = await writer.write(NodeInfo, { network: 'x'.repeat(64) }).catch(e => e)
    expect(err).to.be.instanceOf(FrameTooLargeError)
  })
})

/**
 * Streams end, between two real libp2p nodes over TCP: a stream opened past
 * a protocol's concurrency limit is reset at once and the caller gets a typed
 * error; an idle stream is answered TIMEOUT and reset, not left half-open.
 */
import '../../src/polyfills.js'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { RemoteError, StreamClosedError } from '../../src/errors.js'
import { ErrorCode, FramedStream, handleRequests, request } from '../../src/p2p/framing.js'
import { InfoRequest, NodeInfo } from '../../src/gen/node.pb.js'
import { plainLoopbackNode } from '../helpers.js'
import type { Libp2p } from 'libp2p'

const PROTOCOL = '/cocoon-test/limits/1.0.0'
const MAX = 4096

describe('stream limits between two libp2p nodes', function () {
  this.timeout(20_000)
  let server: Libp2p
  let client: Libp2p
  let release: () => void = () => {}
  /** Requests wait on this until the test calls `release`. */
  let held: Promise<void> = Promise.resolve()
  const hold = (): void => { held = new Promise<void>(resolve => { release = resolve }) }

  before(async () => {
    server = await createLibp2p(plainLoopbackNode())
    client = await createLibp2p(plainLoopbackNode())
    await handleRequests(server, {
      protocol: PROTOCOL,
      maxFrameBytes: MAX,
      deadlineMs: 400,
      maxInboundStreams: 2,
      request: InfoRequest,
      response: NodeInfo,
      // every request waits until the test lets it go: the streams stay busy
      handler: async (req) => { await held; return { nonce: req.nonce } }
    })
    await client.dial(server.getMultiaddrs()[0])
  })

  after(async () => {
    release()
    await Promise.all([client?.stop(), server?.stop()])
  })

  it('answers a stream over the protocol\'s limit at once with OVERLOADED and a retry hint, and serves the others', async () => {
    hold()
    const ask = async (nonce: bigint): Promise<unknown> => await request(client, server.peerId, PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce }, { maxFrameBytes: MAX, deadlineMs: 8_000 })
    const first = ask(1n)
    const second = ask(2n)
    await new Promise(resolve => setTimeout(resolve, 200))
    const started = Date.now()
    const third = await ask(3n).then(() => undefined, (e: unknown) => e)
    expect(third, 'the third request is answered OVERLOADED').to.be.instanceOf(RemoteError)
    expect((third as RemoteError).remoteCode).to.equal(ErrorCode.OVERLOADED)
    expect((third as RemoteError).retryAfterMs).to.be.above(0)
    expect(Date.now() - started, `failed at once, not after a deadline (${String(third)})`).to.be.below(2_000)
    release()
    expect(((await first) as NodeInfo).nonce).to.equal(1n)
    expect(((await second) as NodeInfo).nonce).to.equal(2n)
  })

  it('resets what floods past the answered overflow, and the caller gets a typed error', async () => {
    hold()
    setTimeout(() => { release() }, 1_500)
    const asks = Array.from({ length: 12 }, async (_, i) => await request(client, server.peerId, PROTOCOL, { request: InfoRequest, response: NodeInfo }, { nonce: BigInt(i) }, { maxFrameBytes: MAX, deadlineMs: 5_000 }).then(() => 'ok', (e: unknown) => e))
    const results = await Promise.all(asks)
    for (const r of results) {
      if (r === 'ok') continue
      expect(r instanceof RemoteError || r instanceof StreamClosedError, `a typed error: ${String(r)}`).to.equal(true)
    }
    expect(results.filter(r => r instanceof RemoteError && r.remoteCode === ErrorCode.OVERLOADED).length, 'some answered OVERLOADED').to.be.above(0)
  })

  it('answers an idle stream TIMEOUT and resets it instead of leaving it half-open', async () => {
    const stream = await client.dialProtocol(server.peerId, PROTOCOL)
    const started = Date.now()
    const err = await new FramedStream(stream, { protocol: PROTOCOL, maxFrameBytes: MAX, deadlineMs: 5_000 }).read(NodeInfo).catch((e: unknown) => e)
    expect(String(err)).to.match(/TIMEOUT|deadline/i)
    const endBy = Date.now() + 3_000
    while (stream.status === 'open' && Date.now() < endBy) await new Promise(resolve => setTimeout(resolve, 20))
    expect(stream.status, 'the idle stream is over').to.not.equal('open')
    expect(Date.now() - started, 'within the deadline and the grace after the answer').to.be.below(3_000)
  })
})

import { defaultLogger } from '@libp2p/logger'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { installYamuxWindowHysteresis } from '../../src/p2p/yamux-window.js'
import { plainLoopbackNode, waitFor } from '../helpers.js'
import type { Libp2p, Stream } from '@libp2p/interface'

interface SentFrame { type: number, flag: number, streamID: number, length: number }

const WINDOW = 256 * 1024
const DATA = 0
const WINDOW_UPDATE = 1
const ACK = 2

/** A yamux stream that records the frames it sends. */
function recordingStream (state: StreamState): { stream: YamuxStream, sent: SentFrame[] } {
  const sent: SentFrame[] = []
  const stream = new YamuxStream({
    id: '1',
    streamId: 1,
    state,
    direction: 'inbound',
    log: defaultLogger().forComponent('test:yamux'),
    getRTT: () => -1,
    sendFrame: (header: SentFrame) => { sent.push({ ...header }); return true }
  })
  stream.addEventListener('message', () => {})
  return { stream, sent }
}

function dataFrame (bytes: number): Parameters<YamuxStream['handleData']>[0] {
  return { header: { type: DATA, flag: 0, streamID: 1, length: bytes }, data: new Uint8ArrayList(new Uint8Array(bytes)) } as unknown as Parameters<YamuxStream['handleData']>[0]
}

describe('yamux window updates with hysteresis', () => {
  before(() => { installYamuxWindowHysteresis() })

  it('sends no window update until half the receive window is used, then one', () => {
    const { stream, sent } = recordingStream(StreamState.Established)
    for (let i = 0; i < 127; i++) stream.handleData(dataFrame(1024))
    expect(sent, '127 KiB of a 256 KiB window').to.deep.equal([])
    stream.handleData(dataFrame(1024))
    expect(sent).to.deep.equal([{ type: WINDOW_UPDATE, flag: 0, streamID: 1, length: 128 * 1024 }])
    for (let i = 0; i < 127; i++) stream.handleData(dataFrame(1024))
    expect(sent).to.have.length(1)
  })

  it('acknowledges a newly opened stream on its first data frame at once', () => {
    const { stream, sent } = recordingStream(StreamState.SYNReceived)
    stream.handleData(dataFrame(10))
    expect(sent).to.deep.equal([{ type: WINDOW_UPDATE, flag: ACK, streamID: 1, length: 10 }])
    stream.handleData(dataFrame(10))
    expect(sent).to.have.length(1)
  })

  it('never lets the sender exceed the window it was granted', () => {
    const { stream } = recordingStream(StreamState.Established)
    expect(() => { stream.handleData(dataFrame(WINDOW + 1)) }).to.throw(/window/i)
  })

  describe('between two libp2p nodes over TCP', () => {
    const PROTOCOL = '/cocoon-test/yamux-window/1.0.0'
    let a: Libp2p
    let b: Libp2p
    let received = 0

    before(async () => {
      a = await createLibp2p(plainLoopbackNode())
      b = await createLibp2p(plainLoopbackNode())
      await b.handle(PROTOCOL, (stream: Stream) => {
        stream.addEventListener('message', evt => { received += evt.data.byteLength })
      })
    })

    after(async () => {
      await a?.stop()
      await b?.stop()
    })

    it('carries many small messages with a handful of window updates, and a large transfer without stalling', async function () {
      this.timeout(20_000)
      const updates = { count: 0 }
      const proto = YamuxStream.prototype as unknown as { handleWindowUpdate: (this: YamuxStream, frame: unknown) => void }
      const original = proto.handleWindowUpdate
      proto.handleWindowUpdate = function (this: YamuxStream, frame: unknown) {
        if (this.direction === 'outbound' && this.protocol === PROTOCOL) updates.count++
        original.call(this, frame)
      }
      try {
        const stream = await a.dialProtocol(b.getMultiaddrs()[0], PROTOCOL)
        for (let i = 0; i < 500; i++) {
          if (!stream.send(new Uint8Array(100))) await new Promise(resolve => stream.addEventListener('drain', resolve, { once: true }))
        }
        await waitFor(() => received === 50_000, 5_000, 'the small messages to arrive')
        // the stock stream answers every data frame; with hysteresis only the ACK comes back
        expect(updates.count, 'window updates for 500 messages of 100 bytes').to.be.at.most(2)

        const chunk = new Uint8Array(64 * 1024)
        for (let i = 0; i < 128; i++) {
          if (!stream.send(chunk)) await new Promise(resolve => stream.addEventListener('drain', resolve, { once: true }))
        }
        await waitFor(() => received === 50_000 + 128 * chunk.byteLength, 10_000, '8 MiB to arrive')
        // 8 MiB through a 256 KiB window needs the window refilled many times
        expect(updates.count).to.be.greaterThan(4)
        await stream.close()
      } finally {
        proto.handleWindowUpdate = original
      }
    })
  })
})

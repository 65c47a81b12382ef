/**
 * Yamux receive-window updates with hysteresis.
 *
 * @libp2p/yamux 8 answers every data frame it receives with a window-update
 * frame, so each small message (a gossip RPC, a job chunk, a payment) costs
 * two frames, two noise encryptions and two socket writes. A profile of a
 * 100-node swarm forming put 5 % of all CPU in those updates alone. The Go,
 * Rust and Python yamux implementations (and the yamux spec's own advice)
 * update the window only once half of it has been consumed; this module
 * gives the JavaScript stream the same rule:
 *
 * - a frame that must carry a flag (SYN on open, ACK on accept) is sent at
 *   once, as before;
 * - otherwise a window update is sent only when at least half of the receive
 *   window has been used, so the sender never runs dry while we wait;
 * - the window still grows (up to its maximum) when half of it was used
 *   within four round trips, as the library does.
 *
 * It replaces `YamuxStream.prototype.sendWindowUpdate` (a public export of
 * `@libp2p/yamux/stream`) once per process; a test checks the frames on a real
 * stream pair, so a library release that changes the stream's fields fails
 * the build's tests rather than silently changing behaviour.
 */
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

/** The yamux frame type of a window update (yamux spec: 0x1). */
const WINDOW_UPDATE_FRAME = 1

/** The fields of a yamux stream that window accounting reads and writes. */
interface WindowedStream {
  state: StreamState
  streamId: number
  recvWindow: number
  recvWindowCapacity: number
  maxStreamWindowSize: number
  epochStart: number
  getRTT: () => number
  getSendFlags: () => number
  sendFrame: (header: { type: number, flag: number, streamID: number, length: number }) => boolean
}

let installed = false

/** The window update with hysteresis, called with the stream as `this`. */
function sendWindowUpdate (this: WindowedStream): void {
  if (this.state === StreamState.Paused) {
    // no more data wanted for now; measure the next epoch from the resume
    this.epochStart = Date.now()
    return
  }
  const flags = this.getSendFlags()
  const used = this.recvWindow - this.recvWindowCapacity
  if (flags === 0 && used < this.recvWindow / 2) return
  const now = Date.now()
  const rtt = this.getRTT()
  if (flags === 0 && rtt > -1 && now - this.epochStart <= rtt * 4) {
    // half a window used within four round trips: the window is the bottleneck
    this.recvWindow = Math.min(this.recvWindow * 2, this.maxStreamWindowSize)
  }
  const delta = this.recvWindow - this.recvWindowCapacity
  if (delta === 0 && flags === 0) return
  this.recvWindowCapacity = this.recvWindow
  this.epochStart = now
  this.sendFrame({ type: WINDOW_UPDATE_FRAME, flag: flags, streamID: this.streamId, length: delta })
}

/** Installs the hysteresis rule on every yamux stream of this process (idempotent). */
export function installYamuxWindowHysteresis (): void {
  if (installed) return
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: unknown }
  if (typeof proto.sendWindowUpdate !== 'function') throw new Error('@libp2p/yamux: YamuxStream has no sendWindowUpdate to replace')
  proto.sendWindowUpdate = sendWindowUpdate
  installed = true
}

/**
 * Protocol framing shared by every Cocoon protocol: length-prefixed protobuf
 * frames with a maximum size and a deadline per message, an error frame any
 * side may send instead of a message, and request/response and streaming
 * helpers on top. Protocol logic never touches raw bytes.
 */
import { lpStream, InvalidDataLengthError, InvalidDataLengthLengthError, InvalidMessageLengthError, UnexpectedEOFError } from '@libp2p/utils'
import { ABSOLUTE_MAX_FRAME_BYTES, DEFAULT_MESSAGE_DEADLINE_MS, ERROR_FRAME_GRACE_MS } from './constants.js'
import { ErrorCode, Frame } from '../gen/framing.pb.js'
import {
  CocoonError, DeadlineError, FrameTooLargeError, MalformedMessageError, RemoteError, StreamClosedError
} from '../errors.js'
import type { AbortOptions, Connection, Logger, PeerId, Stream } from '@libp2p/interface'
import type { LengthPrefixedStream } from '@libp2p/utils'
import type { Multiaddr } from '@multiformats/multiaddr'
import type { Uint8ArrayList } from 'uint8arraylist'

export { ErrorCode }

/** The encode/decode pair that protons generates for every message. */
export interface MessageCodec<T> {
  encode(message: Partial<T>): Uint8Array
  decode(bytes: Uint8Array | Uint8ArrayList): T
}

export interface FramingOptions {
  /** Protocol id, used in errors and logs. */
  protocol: string
  /** Largest frame (the encoded envelope) accepted or sent, in bytes. */
  maxFrameBytes: number
  /** Default deadline for each read, in ms. */
  deadlineMs?: number
}

export interface ReadOptions extends AbortOptions {
  /** Overrides the default deadline for this read. */
  deadlineMs?: number
}

/**
 * An error a handler may throw to answer with a specific error code. Other
 * errors become `INTERNAL` with a generic message, so no internals leak.
 */
export class ProtocolError extends CocoonError {
  readonly errorCode: ErrorCode
  readonly retryAfterMs: number
  constructor (errorCode: ErrorCode, message: string, retryAfterMs = 0) {
    super('ERR_REMOTE', message)
    this.errorCode = errorCode
    this.retryAfterMs = retryAfterMs
  }
}

/**
 * A stream that carries typed frames. Every read has a deadline; a frame over
 * the maximum size, a frame that does not decode, or an error frame from the
 * remote each raise a distinct typed error.
 */
export class FramedStream {
  readonly stream: Stream
  readonly protocol: string
  readonly maxFrameBytes: number
  private readonly deadlineMs: number
  private readonly lp: LengthPrefixedStream<Stream>

  constructor (stream: Stream, options: FramingOptions) {
    if (options.maxFrameBytes <= 0 || options.maxFrameBytes > ABSOLUTE_MAX_FRAME_BYTES) {
      throw new RangeError(`maxFrameBytes must be in 1..${ABSOLUTE_MAX_FRAME_BYTES}`)
    }
    this.stream = stream
    this.protocol = options.protocol
    this.maxFrameBytes = options.maxFrameBytes
    this.deadlineMs = options.deadlineMs ?? DEFAULT_MESSAGE_DEADLINE_MS
    this.lp = lpStream(stream, {
      maxDataLength: options.maxFrameBytes,
      // room for one frame in flight plus the next one's start, not more
      maxBufferSize: options.maxFrameBytes * 2 + 64
    })
  }

  /** Reads the next frame and decodes it with `codec`; throws on error frames. */
  async read<T> (codec: MessageCodec<T>, options: ReadOptions = {}): Promise<T> {
    const payload = await this.readPayload(options)
    if (payload == null) {
      throw new StreamClosedError(this.protocol)
    }
    return this.decode(codec, payload)
  }

  /**
   * Reads the next frame, or `undefined` when the remote closed its side
   * cleanly between frames: the end of a message stream.
   */
  async readOrEnd<T> (codec: MessageCodec<T>, options: ReadOptions = {}): Promise<T | undefined> {
    const payload = await this.readPayload(options)
    return payload == null ? undefined : this.decode(codec, payload)
  }

  /** Yields frames until the remote closes its side; each read has the deadline. */
  async * messages<T> (codec: MessageCodec<T>, options: ReadOptions = {}): AsyncGenerator<T, void, undefined> {
    while (true) {
      const message = await this.readOrEnd(codec, options)
      if (message === undefined) return
      yield message
    }
  }

  async write<T> (codec: MessageCodec<T>, message: Partial<T>, options: AbortOptions = {}): Promise<void> {
    await this.writeFrame({ message: codec.encode(message) as Uint8Array<ArrayBuffer> }, options)
  }

  async writeError (code: ErrorCode, message: string, retryAfterMs = 0, options: AbortOptions = {}): Promise<void> {
    // error texts are for humans; keep them short so they always fit a frame
    await this.writeFrame({ error: { code, message: message.slice(0, 512), retryAfterMs } }, options)
  }

  /** Closes our write side; the remote sees the end of the stream. */
  async close (options: AbortOptions = {}): Promise<void> {
    await this.stream.close(options)
  }

  abort (err: Error): void {
    this.stream.abort(err)
  }

  private async writeFrame (frame: Frame, options: AbortOptions): Promise<void> {
    const bytes = Frame.encode(frame)
    if (bytes.byteLength > this.maxFrameBytes) {
      throw new FrameTooLargeError(this.protocol, this.maxFrameBytes)
    }
    await this.lp.write(bytes, options)
  }

  private async readPayload (options: ReadOptions): Promise<Uint8Array | null> {
    const deadlineMs = Math.max(1, Math.ceil(options.deadlineMs ?? this.deadlineMs))
    const deadline = AbortSignal.timeout(deadlineMs)
    const signal = options.signal == null ? deadline : AbortSignal.any([options.signal, deadline])
    let bytes: Uint8ArrayList
    try {
      bytes = await this.lp.read({ signal })
    } catch (err) {
      if (deadline.aborted && options.signal?.aborted !== true) {
        throw new DeadlineError(this.protocol, deadlineMs, { cause: err })
      }
      // a frame over the limit, or more bytes at once than a frame may hold (the read buffer overflowed)
      if (err instanceof InvalidDataLengthError || err instanceof InvalidDataLengthLengthError || (err as Error).name === 'StreamBufferError') {
        throw new FrameTooLargeError(this.protocol, this.maxFrameBytes, { cause: err })
      }
      if (err instanceof InvalidMessageLengthError) {
        throw new MalformedMessageError(this.protocol, 'invalid length prefix', { cause: err })
      }
      if (err instanceof UnexpectedEOFError || (err as Error).name === 'UnexpectedEOFError') {
        if (isEndBetweenFrames(err as Error)) return null
        throw new StreamClosedError(this.protocol, { cause: err })
      }
      throw err
    }
    let frame: Frame
    try {
      frame = Frame.decode(bytes)
    } catch (err) {
      throw new MalformedMessageError(this.protocol, 'frame envelope does not decode', { cause: err })
    }
    if (frame.error != null) {
      throw new RemoteError(this.protocol, frame.error.code, frame.error.message, frame.error.retryAfterMs)
    }
    if (frame.message == null) {
      throw new MalformedMessageError(this.protocol, 'frame carries neither a message nor an error')
    }
    return frame.message
  }

  private decode<T> (codec: MessageCodec<T>, payload: Uint8Array): T {
    try {
      return codec.decode(payload)
    } catch (err) {
      throw new MalformedMessageError(this.protocol, (err as Error).message, { cause: err })
    }
  }
}

// lpStream reads a frame's length one byte at a time; when the remote closed
// its side before the first byte of a frame, that first one-byte read fails
// with exactly this message. Anything else is a frame cut short.
function isEndBetweenFrames (err: Error): boolean {
  return /after reading 0\/1 bytes/.test(err.message)
}

/** Maps any error from a read to the error code to answer the peer with. */
export function errorCodeFor (err: unknown): ErrorCode {
  if (err instanceof ProtocolError) return err.errorCode
  if (err instanceof FrameTooLargeError) return ErrorCode.TOO_LARGE
  if (err instanceof MalformedMessageError) return ErrorCode.BAD_REQUEST
  if (err instanceof DeadlineError) return ErrorCode.TIMEOUT
  return ErrorCode.INTERNAL
}

/** The narrow part of a libp2p node the handlers need. */
export interface ProtocolHost {
  handle(protocol: string, handler: (stream: Stream, connection: Connection) => void | Promise<void>, options?: { maxInboundStreams?: number, maxOutboundStreams?: number, runOnLimitedConnection?: boolean }): Promise<void>
  dialProtocol(peer: PeerId | Multiaddr, protocols: string | string[], options?: AbortOptions & { runOnLimitedConnection?: boolean }): Promise<Stream>
}

export interface RequestContext {
  peer: PeerId
  connection: Connection
  signal: AbortSignal
}

export interface RequestHandlerInit<Req, Res> extends FramingOptions {
  request: MessageCodec<Req>
  response: MessageCodec<Res>
  handler(request: Req, context: RequestContext): Promise<Partial<Res>>
  /** Concurrent inbound streams per connection. */
  maxInboundStreams?: number
  /**
   * Also serve on limited (relayed) connections. Only for small messages:
   * relays cap the bytes and the lifetime of such connections.
   */
  runOnLimitedConnection?: boolean
  log?: Logger
  /** Called once per rejected or failed request, for metrics. */
  onError?(code: ErrorCode, err: unknown): void
}

/**
 * Registers a request/response protocol: read one request within the
 * deadline, validate it by decoding, answer with one response or an error
 * frame. Bad input never throws out of the handler, so it cannot crash the
 * node; the stream is closed (or reset, if the peer does not read) and the
 * node keeps serving.
 */
export async function handleRequests<Req, Res> (host: Pick<ProtocolHost, 'handle'>, init: RequestHandlerInit<Req, Res>): Promise<void> {
  const deadlineMs = init.deadlineMs ?? DEFAULT_MESSAGE_DEADLINE_MS
  const limit = init.maxInboundStreams ?? 8
  const active = new Map<string, number>()
  await host.handle(init.protocol, async (stream, connection) => {
    const framed = new FramedStream(stream, init)
    const signal = AbortSignal.timeout(deadlineMs * 2)
    const running = active.get(connection.id) ?? 0
    active.set(connection.id, running + 1)
    try {
      // over the limit: a typed answer the caller can retry on, not a bare reset
      if (running >= limit) throw new ProtocolError(ErrorCode.OVERLOADED, `more than ${limit} concurrent ${init.protocol} requests on one connection`, OVERLOADED_RETRY_MS)
      const request = await framed.read(init.request, { signal })
      const response = await init.handler(request, { peer: connection.remotePeer, connection, signal })
      await framed.write(init.response, response, { signal })
      await framed.close({ signal })
      await awaitRemoteEnd(framed)
    } catch (err) {
      const code = errorCodeFor(err)
      init.onError?.(code, err)
      init.log?.('%s request from %p failed with %s: %s', init.protocol, connection.remotePeer, code, (err as Error).message)
      await answerWithError(framed, code, err)
    } finally {
      const left = (active.get(connection.id) ?? 1) - 1
      if (left > 0) active.set(connection.id, left)
      else active.delete(connection.id)
    }
    // libp2p resets what comes past the answered overflow: a flood costs no more than this
  }, { maxInboundStreams: limit + OVERFLOW_ANSWERS, runOnLimitedConnection: init.runOnLimitedConnection ?? false })
}

/** Streams past a protocol's limit that still get a typed OVERLOADED answer before libp2p resets the rest. */
const OVERFLOW_ANSWERS = 4
/** When a caller refused for too many concurrent requests may try again. */
const OVERLOADED_RETRY_MS = 250

/**
 * Sends an error frame and closes; resets the stream if that cannot finish
 * quickly, or if the peer keeps its side open after it (an idle or hostile
 * peer never leaves a half-open stream behind).
 */
export async function answerWithError (framed: FramedStream, code: ErrorCode, err: unknown): Promise<void> {
  const message = err instanceof CocoonError ? err.message : 'internal error'
  const retryAfterMs = err instanceof ProtocolError ? err.retryAfterMs : 0
  const grace = AbortSignal.timeout(ERROR_FRAME_GRACE_MS)
  try {
    if (framed.stream.writeStatus === 'writable') {
      await framed.writeError(code, message, retryAfterMs, { signal: grace })
      await framed.close({ signal: grace })
      await awaitRemoteEnd(framed)
      return
    }
  } catch {
    // fall through to a reset
  }
  framed.abort(err instanceof Error ? err : new Error(String(err)))
}

/**
 * After our side closed: waits (at most ERROR_FRAME_GRACE_MS) for the peer to
 * close its side too, then resets the stream if it did not.
 */
export async function awaitRemoteEnd (framed: FramedStream, graceMs = ERROR_FRAME_GRACE_MS): Promise<void> {
  const stream = framed.stream
  const ended = (): boolean => stream.remoteWriteStatus !== 'writable' || stream.status !== 'open'
  if (ended()) return
  await new Promise<void>(resolve => {
    const done = (): void => {
      clearTimeout(timer)
      stream.removeEventListener('remoteCloseWrite', done)
      stream.removeEventListener('close', done)
      resolve()
    }
    const timer = setTimeout(done, graceMs)
    stream.addEventListener('remoteCloseWrite', done)
    stream.addEventListener('close', done)
  })
  if (!ended()) framed.abort(new Error(`the peer kept its side of ${framed.protocol} open after the answer`))
}

export interface RequestOptions extends AbortOptions {
  maxFrameBytes: number
  deadlineMs?: number
  /** Use an existing limited (relayed) connection instead of requiring a direct one. */
  runOnLimitedConnection?: boolean
}

/**
 * Opens a stream to `peer` on `protocol`, sends one request and reads one
 * response. Throws a `RemoteError` when the peer answers with an error frame.
 */
export async function request<Req, Res> (
  host: Pick<ProtocolHost, 'dialProtocol'>,
  peer: PeerId | Multiaddr,
  protocol: string,
  codecs: { request: MessageCodec<Req>, response: MessageCodec<Res> },
  message: Partial<Req>,
  options: RequestOptions
): Promise<Res> {
  const deadlineMs = options.deadlineMs ?? DEFAULT_MESSAGE_DEADLINE_MS
  const deadline = AbortSignal.timeout(deadlineMs)
  const signal = options.signal == null ? deadline : AbortSignal.any([options.signal, deadline])
  let stream: Stream
  try {
    stream = await host.dialProtocol(peer, protocol, { signal, runOnLimitedConnection: options.runOnLimitedConnection })
  } catch (err) {
    if (deadline.aborted) throw new DeadlineError(protocol, deadlineMs, { cause: err })
    throw err
  }
  const framed = new FramedStream(stream, { protocol, maxFrameBytes: options.maxFrameBytes, deadlineMs })
  try {
    await framed.write(codecs.request, message, { signal })
    const response = await framed.read(codecs.response, { signal, deadlineMs })
    await framed.close({ signal }).catch(() => {})
    return response
  } catch (err) {
    framed.abort(err as Error)
    // a stream the peer reset (over its limit, or it went away) is a typed error too
    if (!(err instanceof CocoonError) && !signal.aborted) throw new StreamClosedError(protocol, { cause: err })
    throw err
  }
}

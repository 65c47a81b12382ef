/**
 * A cheap "need more bytes" for libp2p's length-prefixed decoder.
 *
 * `LengthPrefixedDecoder` (from `@libp2p/utils`, used by the noise
 * transport for every encrypted frame) reads frames in a loop and learns
 * that the buffer holds no further length prefix by catching the RangeError
 * its length decoder throws. Almost every read drains the buffer, so almost
 * every read ends by constructing an error and capturing its stack: a CPU
 * profile of a 300-node simulation put 5.7 % of a host's time in noise's
 * `uint16BEDecode`, nearly all of it that stack capture.
 *
 * This wraps each decoder's length decoder, once per decoder, so that an
 * empty buffer (no length prefix can be zero bytes long) throws one RangeError
 * made in advance, which costs no stack capture; a buffer holding part of a
 * prefix still goes to the original decoder, so what the loop decodes and
 * when it stops are unchanged. A test decodes split and joined frames
 * through the real decoder, so a library change that breaks this fails the
 * tests.
 */
import { LengthPrefixedDecoder } from '@libp2p/utils'

/** Thrown for an empty buffer: the decoder's loop catches RangeError and waits for more bytes. */
const NEED_MORE = new RangeError('length prefix incomplete')
const WRAPPED = Symbol('cocoon.lengthPrefixWrapped')

type LengthDecoder = (data: { byteLength: number }) => number

interface DecoderFields {
  lengthDecoder: LengthDecoder
  [WRAPPED]?: true
}

let installed = false

export function installLengthPrefixFastPath (): void {
  if (installed) return
  installed = true
  const proto = LengthPrefixedDecoder.prototype as unknown as { decode: (this: DecoderFields, buf: unknown) => Generator<unknown> }
  const decode = proto.decode
  if (typeof decode !== 'function') return
  proto.decode = function (this: DecoderFields, buf: unknown) {
    if (this[WRAPPED] !== true && typeof this.lengthDecoder === 'function') {
      const inner = this.lengthDecoder
      this.lengthDecoder = data => {
        if (data.byteLength === 0) throw NEED_MORE
        return inner(data)
      }
      this[WRAPPED] = true
    }
    return decode.call(this, buf)
  }
}

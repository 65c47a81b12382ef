import { LengthPrefixedDecoder } from '@libp2p/utils'
import { expect } from 'chai'
import { Uint8ArrayList } from 'uint8arraylist'
import { installLengthPrefixFastPath } from '../../src/p2p/length-prefix.js'

/** A 2-byte big-endian length decoder like noise's, counting the errors it constructs. */
function countingUint16 (): { decode: (data: Uint8Array | Uint8ArrayList) => number, thrown: () => number } {
  let thrown = 0
  return {
    decode: data => {
      if (data.length < 2) {
        thrown++
        throw new RangeError('Could not decode int16BE')
      }
      return data instanceof Uint8Array ? (data[0] << 8) + data[1] : data.getUint16(0)
    },
    thrown: () => thrown
  }
}

function frame (payload: number[]): Uint8Array {
  return Uint8Array.from([payload.length >> 8, payload.length & 0xff, ...payload])
}

function decodeAll (decoder: LengthPrefixedDecoder, input: Uint8Array): number[][] {
  return [...decoder.decode(input)].map(b => [...(b instanceof Uint8Array ? b : b.subarray())])
}

describe('length-prefixed decoding without a stack trace per read', () => {
  before(() => { installLengthPrefixFastPath() })

  it('decodes whole frames without constructing an error when the buffer drains', () => {
    const lengths = countingUint16()
    const decoder = new LengthPrefixedDecoder({ lengthDecoder: lengths.decode, encodingLength: () => 2 })
    const frames = [[1, 2, 3], [4], [5, 6, 7, 8, 9]]
    expect(decodeAll(decoder, Uint8Array.from(frames.flatMap(f => [...frame(f)])))).to.deep.equal(frames)
    for (let i = 0; i < 100; i++) expect(decodeAll(decoder, frame([i]))).to.deep.equal([[i]])
    // the library's own decoder threw (and captured a stack) once per read
    expect(lengths.thrown()).to.equal(0)
  })

  it('still waits for the rest of a frame split anywhere, prefix included', () => {
    const lengths = countingUint16()
    const decoder = new LengthPrefixedDecoder({ lengthDecoder: lengths.decode, encodingLength: () => 2 })
    const bytes = Uint8Array.from([...frame([10, 11, 12]), ...frame([13, 14])])
    const out: number[][] = []
    for (const b of bytes) out.push(...decodeAll(decoder, Uint8Array.of(b)))
    expect(out).to.deep.equal([[10, 11, 12], [13, 14]])
    // only a buffer holding half of a prefix reaches the original decoder's error
    expect(lengths.thrown()).to.equal(2)
  })

  it('keeps the default varint decoder and its length limit', () => {
    const decoder = new LengthPrefixedDecoder({ maxDataLength: 300 })
    const payload = Array.from({ length: 200 }, (_, i) => i)
    // 200 as a varint is two bytes: 0xc8 0x01
    const bytes = Uint8Array.from([0xc8, 0x01, ...payload])
    expect(decodeAll(decoder, bytes.subarray(0, 1))).to.deep.equal([])
    expect(decodeAll(decoder, bytes.subarray(1))).to.deep.equal([payload])
    expect(() => decodeAll(decoder, Uint8Array.from([0xad, 0x02]))).to.throw(/Invalid message length/)
  })
})

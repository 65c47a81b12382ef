/**
 * GGUF (v3) serialisation: a little-endian writer and the typed metadata
 * values a model header holds. Used by the synthetic model writer (gguf.ts).
 */

export const GGUF_MAGIC = 0x46554747 // "GGUF" read as a little-endian u32
export const GGUF_VERSION = 3

/** Little-endian GGUF serialisation into growing chunks. */
export class GgufWriter {
  private readonly chunks: Buffer[] = []
  length = 0

  private push (b: Buffer): void { this.chunks.push(b); this.length += b.length }
  u32 (v: number): void { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b) }
  i32 (v: number): void { const b = Buffer.alloc(4); b.writeInt32LE(v); this.push(b) }
  u64 (v: number): void { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b) }
  f32 (v: number): void { const b = Buffer.alloc(4); b.writeFloatLE(v); this.push(b) }
  bool (v: boolean): void { this.push(Buffer.from([v ? 1 : 0])) }
  str (s: string): void { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b) }
  raw (b: Buffer): void { this.push(b) }
  pad (alignment: number): void {
    const rest = this.length % alignment
    if (rest !== 0) this.push(Buffer.alloc(alignment - rest))
  }

  toBuffer (): Buffer { return Buffer.concat(this.chunks, this.length) }
}

// GGUF metadata value types.
const T_UINT32 = 4
const T_INT32 = 5
const T_FLOAT32 = 6
const T_BOOL = 7
const T_STRING = 8
const T_ARRAY = 9

/** A metadata value with its GGUF type. */
export type MetaValue =
  | { type: 'u32', value: number }
  | { type: 'f32', value: number }
  | { type: 'bool', value: boolean }
  | { type: 'str', value: string }
  | { type: 'str[]', value: string[] }
  | { type: 'f32[]', value: number[] }
  | { type: 'i32[]', value: number[] }

/** Writes one metadata key and typed value. */
export function writeMeta (w: GgufWriter, key: string, v: MetaValue): void {
  w.str(key)
  switch (v.type) {
    case 'u32': w.u32(T_UINT32); w.u32(v.value); break
    case 'f32': w.u32(T_FLOAT32); w.f32(v.value); break
    case 'bool': w.u32(T_BOOL); w.bool(v.value); break
    case 'str': w.u32(T_STRING); w.str(v.value); break
    case 'str[]': w.u32(T_ARRAY); w.u32(T_STRING); w.u64(v.value.length); for (const s of v.value) w.str(s); break
    case 'f32[]': w.u32(T_ARRAY); w.u32(T_FLOAT32); w.u64(v.value.length); for (const x of v.value) w.f32(x); break
    case 'i32[]': w.u32(T_ARRAY); w.u32(T_INT32); w.u64(v.value.length); for (const x of v.value) w.i32(x); break
  }
}

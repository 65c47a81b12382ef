/**
 * A writer for small llama-architecture GGUF (v3) models with seeded random
 * weights. They load in llama.cpp like any real model (SentencePiece-style
 * vocabulary with byte fallback, a ChatML chat template, F32 tensors) and
 * generate fast on a CPU, so a worker and the tests can run the real
 * inference path without downloading weights. Their output is noise.
 *
 * The same options always give byte-identical files: the weights come from a
 * seeded PRNG and nothing depends on the time or the machine.
 */
import { access, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { writeFileAtomic } from '../../../ops/atomic-write.js'
import { GGUF_MAGIC, GGUF_VERSION, GgufWriter, writeMeta } from './gguf-writer.js'
import type { MetaValue } from './gguf-writer.js'
import { BOS_ID, buildVocabulary, EOS_ID, SYNTHETIC_MIN_VOCAB, UNK_ID } from './gguf-vocab.js'
import type { Vocabulary } from './gguf-vocab.js'

export { SYNTHETIC_MIN_VOCAB } from './gguf-vocab.js'

export interface SyntheticModelOptions {
  /** PRNG seed for the weights (a 32-bit unsigned integer). */
  seed?: number
  /** Vocabulary size; at least SYNTHETIC_MIN_VOCAB (control, byte and single-character tokens). */
  vocab?: number
  /** Width of the residual stream (n_embd). */
  embedding?: number
  layers?: number
  heads?: number
  headsKv?: number
  feedForward?: number
  /** The context length the model claims to be trained on. */
  contextLength?: number
}

export type ResolvedSyntheticModelOptions = Required<SyntheticModelOptions>

/**
 * About 1M parameters: a few hundred to a thousand tokens/s on one CPU core,
 * with enough vocabulary (word pieces) that the noise looks like text.
 */
export const SYNTHETIC_MODEL_DEFAULTS: Readonly<ResolvedSyntheticModelOptions> = Object.freeze({
  seed: 1,
  vocab: 1024,
  embedding: 128,
  layers: 4,
  heads: 4,
  headsKv: 2,
  feedForward: 384,
  contextLength: 2048
})

/** The name written to general.name; also what marks a file as synthetic. */
export const SYNTHETIC_MODEL_NAME = 'cocoon-synthetic (random weights, test model: output is noise)'

/** ChatML: the jinja form node-llama-cpp and llama.cpp both understand. */
export const SYNTHETIC_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

/** Bumped whenever the bytes for given options change, so cached files are not reused across formats. */
const FORMAT_VERSION = 1
const ALIGNMENT = 32

/** Checks and completes options; throws a RangeError naming the bad one. */
export function resolveSyntheticOptions (options: SyntheticModelOptions = {}): ResolvedSyntheticModelOptions {
  const o: ResolvedSyntheticModelOptions = { ...SYNTHETIC_MODEL_DEFAULTS }
  for (const key of Object.keys(SYNTHETIC_MODEL_DEFAULTS) as Array<keyof SyntheticModelOptions>) {
    const value = options[key]
    if (value !== undefined) o[key] = value
  }
  const whole = (key: keyof SyntheticModelOptions, min: number, max: number): void => {
    const v = o[key]
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`synthetic model: ${key} must be a whole number in [${min}, ${max}] (got ${String(v)})`)
  }
  whole('seed', 0, 0xffffffff)
  whole('vocab', SYNTHETIC_MIN_VOCAB, 65536)
  whole('embedding', 8, 4096)
  whole('layers', 1, 64)
  whole('heads', 1, 256)
  whole('headsKv', 1, 256)
  whole('feedForward', 1, 65536)
  whole('contextLength', 16, 1 << 20)
  if (o.embedding % o.heads !== 0) throw new RangeError(`synthetic model: embedding (${o.embedding}) must be a multiple of heads (${o.heads})`)
  if (o.heads % o.headsKv !== 0) throw new RangeError(`synthetic model: heads (${o.heads}) must be a multiple of headsKv (${o.headsKv})`)
  if ((o.embedding / o.heads) % 2 !== 0) throw new RangeError('synthetic model: the head size (embedding / heads) must be even for RoPE')
  return o
}

/** mulberry32: tiny, fast and identical on every platform. */
function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface TensorPlan {
  name: string
  /** ggml order: ne[0] is the contiguous (input) dimension. */
  dims: number[]
  fill: (data: Float32Array, rand: () => number) => void
}

/** Uniform in [-a, a] with standard deviation `std`. */
function uniformFill (std: number): (data: Float32Array, rand: () => number) => void {
  const a = std * Math.sqrt(3)
  return (data, rand) => { for (let i = 0; i < data.length; i++) data[i] = (rand() * 2 - 1) * a }
}

const onesFill = (data: Float32Array): void => { data.fill(1) }

/**
 * The tensors of the model, in file order. Residual dimension 0 carries a
 * constant: token embeddings set it, no layer writes to it, so after the
 * final RMS norm it is always positive. Suppressed tokens (EOS, control,
 * byte and unused tokens) read only that dimension with a large negative
 * weight, so their logits are always negative and in practice far below the
 * word pieces': random generation runs to max_tokens instead of stopping at
 * once, and the output is printable text rather than stray bytes.
 */
function planTensors (o: ResolvedSyntheticModelOptions, vocab: Vocabulary): TensorPlan[] {
  const d = o.embedding
  const headDim = d / o.heads
  const kvDim = headDim * o.headsKv
  const inStd = (n: number): number => 1 / Math.sqrt(n)
  const suppressed = new Set(vocab.suppressed)
  const CONSTANT = 1
  const SUPPRESS = -100

  const plans: TensorPlan[] = [{
    name: 'token_embd.weight',
    dims: [d, o.vocab],
    fill: (data, rand) => {
      uniformFill(1)(data, rand)
      for (let t = 0; t < o.vocab; t++) data[t * d] = CONSTANT
    }
  }]
  // Writes into dimension 0 of the residual are zeroed (row 0 of the output projections).
  const zeroRow0 = (std: number) => (data: Float32Array, rand: () => number): void => {
    uniformFill(std)(data, rand)
    data.fill(0, 0, data.length / d)
  }
  for (let l = 0; l < o.layers; l++) {
    const p = `blk.${l}.`
    plans.push(
      { name: p + 'attn_norm.weight', dims: [d], fill: onesFill },
      { name: p + 'attn_q.weight', dims: [d, d], fill: uniformFill(inStd(d)) },
      { name: p + 'attn_k.weight', dims: [d, kvDim], fill: uniformFill(inStd(d)) },
      { name: p + 'attn_v.weight', dims: [d, kvDim], fill: uniformFill(inStd(d)) },
      // Scaled down so the residual stream stays near unit size over the layers.
      { name: p + 'attn_output.weight', dims: [d, d], fill: zeroRow0(inStd(d) / Math.sqrt(o.layers)) },
      { name: p + 'ffn_norm.weight', dims: [d], fill: onesFill },
      { name: p + 'ffn_gate.weight', dims: [d, o.feedForward], fill: uniformFill(inStd(d)) },
      { name: p + 'ffn_down.weight', dims: [o.feedForward, d], fill: zeroRow0(inStd(o.feedForward) / Math.sqrt(o.layers)) },
      { name: p + 'ffn_up.weight', dims: [d, o.feedForward], fill: uniformFill(inStd(d)) }
    )
  }
  plans.push(
    { name: 'output_norm.weight', dims: [d], fill: onesFill },
    {
      name: 'output.weight',
      dims: [d, o.vocab],
      fill: (data, rand) => {
        // Logits with a standard deviation of about 2.5: peaked enough to
        // look like choices, flat enough that sampling varies.
        uniformFill(2.5 / Math.sqrt(d - 1))(data, rand)
        for (let t = 0; t < o.vocab; t++) {
          const row = t * d
          if (suppressed.has(t)) {
            data.fill(0, row, row + d)
            data[row] = SUPPRESS
          } else {
            data[row] = 0
          }
        }
      }
    }
  )
  return plans
}

function metadata (o: ResolvedSyntheticModelOptions, vocab: Vocabulary): Array<[string, MetaValue]> {
  const headDim = o.embedding / o.heads
  return [
    ['general.architecture', { type: 'str', value: 'llama' }],
    ['general.name', { type: 'str', value: SYNTHETIC_MODEL_NAME }],
    ['general.description', { type: 'str', value: `Generated by cocoon-p2p with random weights (seed ${o.seed}) for testing; it knows nothing and its output is noise.` }],
    ['general.alignment', { type: 'u32', value: ALIGNMENT }],
    ['general.file_type', { type: 'u32', value: 0 }], // all F32
    ['llama.context_length', { type: 'u32', value: o.contextLength }],
    ['llama.embedding_length', { type: 'u32', value: o.embedding }],
    ['llama.block_count', { type: 'u32', value: o.layers }],
    ['llama.feed_forward_length', { type: 'u32', value: o.feedForward }],
    ['llama.rope.dimension_count', { type: 'u32', value: headDim }],
    ['llama.rope.freq_base', { type: 'f32', value: 10000 }],
    ['llama.attention.head_count', { type: 'u32', value: o.heads }],
    ['llama.attention.head_count_kv', { type: 'u32', value: o.headsKv }],
    ['llama.attention.layer_norm_rms_epsilon', { type: 'f32', value: 1e-5 }],
    ['llama.vocab_size', { type: 'u32', value: o.vocab }],
    ['tokenizer.ggml.model', { type: 'str', value: 'llama' }],
    ['tokenizer.ggml.tokens', { type: 'str[]', value: vocab.tokens }],
    ['tokenizer.ggml.scores', { type: 'f32[]', value: vocab.scores }],
    ['tokenizer.ggml.token_type', { type: 'i32[]', value: vocab.types }],
    ['tokenizer.ggml.unknown_token_id', { type: 'u32', value: UNK_ID }],
    ['tokenizer.ggml.bos_token_id', { type: 'u32', value: BOS_ID }],
    ['tokenizer.ggml.eos_token_id', { type: 'u32', value: EOS_ID }],
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: true }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
    ['tokenizer.ggml.add_space_prefix', { type: 'bool', value: true }],
    ['tokenizer.chat_template', { type: 'str', value: SYNTHETIC_CHAT_TEMPLATE }]
  ]
}

/** The whole file in memory (about 4 bytes per parameter). */
export function buildSyntheticGguf (options: SyntheticModelOptions = {}): { bytes: Buffer, parameters: number, options: ResolvedSyntheticModelOptions } {
  const o = resolveSyntheticOptions(options)
  const vocab = buildVocabulary(o.vocab)
  const plans = planTensors(o, vocab)
  const meta = metadata(o, vocab)

  const header = new GgufWriter()
  header.u32(GGUF_MAGIC)
  header.u32(GGUF_VERSION)
  header.u64(plans.length)
  header.u64(meta.length)
  for (const [key, value] of meta) writeMeta(header, key, value)

  let offset = 0
  let parameters = 0
  const offsets: number[] = []
  for (const plan of plans) {
    const count = plan.dims.reduce((a, b) => a * b, 1)
    parameters += count
    offsets.push(offset)
    header.str(plan.name)
    header.u32(plan.dims.length)
    for (const n of plan.dims) header.u64(n)
    header.u32(0) // GGML_TYPE_F32
    header.u64(offset)
    offset += Math.ceil((count * 4) / ALIGNMENT) * ALIGNMENT
  }
  header.pad(ALIGNMENT)

  const headerBytes = header.toBuffer()
  const out = Buffer.alloc(headerBytes.length + offset)
  headerBytes.copy(out, 0)
  const rand = prng(o.seed)
  plans.forEach((plan, i) => {
    const count = plan.dims.reduce((a, b) => a * b, 1)
    const data = new Float32Array(count)
    plan.fill(data, rand)
    // Explicitly little-endian, whatever the host's byte order.
    const at = headerBytes.length + offsets[i]
    for (let j = 0; j < count; j++) out.writeFloatLE(data[j], at + j * 4)
  })
  return { bytes: out, parameters, options: o }
}

export async function writeSyntheticGguf (path: string, options: SyntheticModelOptions = {}): Promise<{ path: string, bytes: number, parameters: number }> {
  const built = buildSyntheticGguf(options)
  await writeFileAtomic(path, built.bytes)
  return { path, bytes: built.bytes.length, parameters: built.parameters }
}

/** The file name for these options: a hash of them, so different options never share a file. */
export function syntheticModelFileName (options: SyntheticModelOptions = {}): string {
  const o = resolveSyntheticOptions(options)
  const key = JSON.stringify({ v: FORMAT_VERSION, ...o }, Object.keys({ v: 0, ...o }).sort())
  return `cocoon-synthetic-${bytesToHex(sha256(new TextEncoder().encode(key))).slice(0, 12)}.gguf`
}

/** Generates the file into `dir` once (atomically: temp file + rename); later calls reuse it. */
export async function ensureSyntheticModel (dir: string, options: SyntheticModelOptions = {}): Promise<{ path: string, created: boolean }> {
  const path = join(dir, syntheticModelFileName(options))
  try {
    await access(path)
    return { path, created: false }
  } catch {}
  await mkdir(dir, { recursive: true })
  await writeSyntheticGguf(path, options)
  return { path, created: true }
}

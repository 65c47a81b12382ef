/**
 * The synthetic GGUF writer: byte-identical output for the same options, a
 * structure node-llama-cpp's own GGUF parser reads back (header, llama
 * hyperparameters, tokenizer, tensor names, shapes and alignment), and the
 * generate-once cache in a data directory.
 */
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { expect } from 'chai'
import { sha256 } from '@noble/hashes/sha2.js'
import { bytesToHex } from '@noble/hashes/utils.js'
import { readGgufFileInfo } from 'node-llama-cpp'
import {
  buildSyntheticGguf,
  ensureSyntheticModel,
  SYNTHETIC_MIN_VOCAB,
  SYNTHETIC_MODEL_DEFAULTS,
  SYNTHETIC_MODEL_NAME,
  syntheticModelFileName,
  writeSyntheticGguf
} from '../../src/roles/worker/backends/gguf.js'

const SMALL = { vocab: 400, embedding: 32, layers: 2, heads: 4, headsKv: 2, feedForward: 48, contextLength: 256 }

function hash (bytes: Uint8Array): string {
  return bytesToHex(sha256(bytes))
}

describe('synthetic GGUF', function () {
  let dir: string
  before(async function () { dir = await mkdtemp(join(tmpdir(), 'cocoon-gguf-')) })
  after(async function () { await rm(dir, { recursive: true, force: true }) })

  it('is byte-identical for the same options and differs with the seed', function () {
    const a = buildSyntheticGguf({ ...SMALL, seed: 7 })
    const b = buildSyntheticGguf({ ...SMALL, seed: 7 })
    const c = buildSyntheticGguf({ ...SMALL, seed: 8 })
    expect(hash(a.bytes)).to.equal(hash(b.bytes))
    expect(hash(a.bytes)).to.not.equal(hash(c.bytes))
    // Only the weights (and the seed in the description) change: same length.
    expect(c.bytes.length).to.equal(a.bytes.length)
  })

  it('writes the default model deterministically, at about a million parameters', async function () {
    const p1 = join(dir, 'a.gguf')
    const p2 = join(dir, 'b.gguf')
    const r1 = await writeSyntheticGguf(p1)
    const r2 = await writeSyntheticGguf(p2)
    expect(r1.parameters).to.equal(r2.parameters)
    expect(r1.parameters).to.be.within(500_000, 2_000_000)
    expect(r1.bytes).to.equal((await stat(p1)).size)
    expect(r1.bytes).to.be.greaterThan(r1.parameters * 4) // F32 weights plus header
    expect(hash(await readFile(p1))).to.equal(hash(await readFile(p2)))
  })

  it('starts with the GGUF v3 header and counts', function () {
    const { bytes, options } = buildSyntheticGguf(SMALL)
    expect(bytes.subarray(0, 4).toString('latin1')).to.equal('GGUF')
    expect(bytes.readUInt32LE(4)).to.equal(3)
    expect(bytes.readBigUInt64LE(8)).to.equal(BigInt(3 + 9 * options.layers)) // tensors
    expect(Number(bytes.readBigUInt64LE(16))).to.be.greaterThan(20) // metadata entries
  })

  it('reads back through node-llama-cpp as a llama model with tokenizer, template and aligned tensors', async function () {
    const path = join(dir, 'small.gguf')
    const written = await writeSyntheticGguf(path, SMALL)
    const info = await readGgufFileInfo(path, { readTensorInfo: true })
    expect(info.version).to.equal(3)
    const meta = info.metadata
    expect(meta.general.architecture).to.equal('llama')
    expect(meta.general.name).to.equal(SYNTHETIC_MODEL_NAME)
    expect(meta.general.name).to.match(/synthetic/)
    expect(meta.general.alignment).to.equal(32)
    const llama = (meta as unknown as { llama: Record<string, unknown> }).llama
    expect(llama.context_length).to.equal(SMALL.contextLength)
    expect(llama.embedding_length).to.equal(SMALL.embedding)
    expect(llama.block_count).to.equal(SMALL.layers)
    expect(llama.feed_forward_length).to.equal(SMALL.feedForward)
    expect(llama.rope).to.deep.include({ dimension_count: SMALL.embedding / SMALL.heads })
    expect(llama.attention).to.deep.include({ head_count: SMALL.heads, head_count_kv: SMALL.headsKv })
    expect((llama.attention as Record<string, number>).layer_norm_rms_epsilon).to.be.closeTo(1e-5, 1e-9)

    const tok = meta.tokenizer
    expect(tok.ggml.model).to.equal('llama')
    const tokens = tok.ggml.tokens as readonly string[]
    expect(tokens).to.have.length(SMALL.vocab)
    expect(tokens.slice(0, 3)).to.deep.equal(['<unk>', '<s>', '</s>'])
    expect(tokens).to.include.members(['<0x00>', '<0x0A>', '<0xFF>', '<|im_start|>', '<|im_end|>'])
    expect(tok.ggml.scores).to.have.length(SMALL.vocab)
    expect(tok.ggml.token_type).to.have.length(SMALL.vocab)
    expect(tok.ggml.bos_token_id).to.equal(1)
    expect(tok.ggml.eos_token_id).to.equal(2)
    expect(tok.chat_template).to.include('<|im_start|>').and.to.include('add_generation_prompt')

    const tensors = info.fullTensorInfo ?? []
    const names = tensors.map(t => t.name)
    expect(names.slice(0, 1)).to.deep.equal(['token_embd.weight'])
    expect(names).to.include.members(['output_norm.weight', 'output.weight'])
    for (let l = 0; l < SMALL.layers; l++) {
      for (const n of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down']) {
        expect(names).to.include(`blk.${l}.${n}.weight`)
      }
    }
    const kvDim = (SMALL.embedding / SMALL.heads) * SMALL.headsKv
    const dims = (name: string): number[] => tensors.find(t => t.name === name)?.dimensions.map(Number) ?? []
    expect(dims('token_embd.weight')).to.deep.equal([SMALL.embedding, SMALL.vocab])
    expect(dims('blk.0.attn_k.weight')).to.deep.equal([SMALL.embedding, kvDim])
    expect(dims('blk.1.ffn_down.weight')).to.deep.equal([SMALL.feedForward, SMALL.embedding])
    let parameters = 0
    for (const t of tensors) {
      expect(t.ggmlType).to.equal(0) // F32
      expect(Number(t.offset) % 32, t.name).to.equal(0)
      expect(Number(t.fileOffset) % 32, t.name).to.equal(0)
      parameters += t.dimensions.map(Number).reduce((a, b) => a * b, 1)
    }
    expect(parameters).to.equal(written.parameters)
    // The data section starts aligned right after the info, and the last tensor ends the file.
    expect(info.infoEndOffset).to.equal(Number(tensors[0].fileOffset))
    const last = tensors[tensors.length - 1]
    const lastBytes = last.dimensions.map(Number).reduce((a, b) => a * b, 1) * 4
    expect(Number(last.fileOffset) + Math.ceil(lastBytes / 32) * 32).to.equal(written.bytes)
  })

  it('generates into a data directory once, then reuses the file', async function () {
    const data = join(dir, 'data', 'nested')
    const first = await ensureSyntheticModel(data, SMALL)
    expect(first.created).to.equal(true)
    expect(first.path.startsWith(data)).to.equal(true)
    const before = await stat(first.path)
    const again = await ensureSyntheticModel(data, SMALL)
    expect(again).to.deep.equal({ path: first.path, created: false })
    expect((await stat(again.path)).mtimeMs).to.equal(before.mtimeMs)
    // No temp files left behind, and other options get their own file.
    expect(await readdir(data)).to.deep.equal([syntheticModelFileName(SMALL)])
    const other = await ensureSyntheticModel(data, { ...SMALL, seed: 99 })
    expect(other.created).to.equal(true)
    expect(other.path).to.not.equal(first.path)
    expect(hash(await readFile(first.path))).to.equal(hash(buildSyntheticGguf(SMALL).bytes))
  })

  it('rejects options it cannot build', function () {
    expect(() => buildSyntheticGguf({ vocab: SYNTHETIC_MIN_VOCAB - 1 })).to.throw(RangeError, /vocab/)
    expect(() => buildSyntheticGguf({ embedding: 30, heads: 4 })).to.throw(RangeError, /multiple of heads/)
    expect(() => buildSyntheticGguf({ heads: 4, headsKv: 3 })).to.throw(RangeError, /headsKv/)
    expect(() => buildSyntheticGguf({ seed: -1 })).to.throw(RangeError, /seed/)
    expect(SYNTHETIC_MODEL_DEFAULTS.vocab).to.be.at.least(SYNTHETIC_MIN_VOCAB)
  })
})

/**
 * The vocabulary of the synthetic GGUF model (gguf.ts): SentencePiece-style
 * tokens with byte fallback, the ChatML control tokens and prefix-closed
 * English word pieces, with the scores and token types llama.cpp reads.
 */

// Token types as llama.cpp defines them (llama_token_type).
const TOKEN_NORMAL = 1
const TOKEN_UNKNOWN = 2
const TOKEN_CONTROL = 3
const TOKEN_BYTE = 6
const TOKEN_UNUSED = 5

export const UNK_ID = 0
export const BOS_ID = 1
export const EOS_ID = 2
const BYTE_BASE = 3
const SPACE = '\u2581' // SentencePiece's visible space

const CONTROL_TOKENS = ['<|im_start|>', '<|im_end|>']
/** Control tokens, bytes, the visible space and the 94 printable ASCII characters. */
export const SYNTHETIC_MIN_VOCAB = BYTE_BASE + 256 + CONTROL_TOKENS.length + 1 + 94

// Common English words: with every prefix in the vocabulary, SentencePiece
// merging can reach them, and random sampling then produces word-like noise.
const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were ' +
  'her she there been one all we their has would when if more no out so said what up its about into than them can only ' +
  'other new some could time these two may then do first any my now such like our over man me even most made after also ' +
  'did many before must through back years where much your way well down should because each just those people how too ' +
  'little state good very make world still own see men work long get here between both life being under never day same ' +
  'another know while last might us great old year off come since against go came right used take three place model ' +
  'token network peer worker proxy client node trust proof light stone river water green blue red signal random noise ' +
  'cocoon data open secret key seal chain block value price hash graph layer weight'
).split(' ')

const PUNCTUATION_PIECES = [', ', '. ', '.\n', '? ', '! ', ': ', '; ']

export interface Vocabulary {
  tokens: string[]
  scores: number[]
  types: number[]
  /** Token ids whose logits the model pushes far down (control, bytes, unused). */
  suppressed: number[]
}

/** The vocabulary for `size` tokens; deterministic, prefix-closed word pieces after the base tokens. */
export function buildVocabulary (size: number): Vocabulary {
  const tokens: string[] = []
  const types: number[] = []
  const seen = new Set<string>()
  const add = (text: string, type: number): boolean => {
    if (seen.has(text) || tokens.length >= size) return false
    seen.add(text)
    tokens.push(text)
    types.push(type)
    return true
  }
  add('<unk>', TOKEN_UNKNOWN)
  add('<s>', TOKEN_CONTROL)
  add('</s>', TOKEN_CONTROL)
  for (let b = 0; b < 256; b++) add(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, TOKEN_BYTE)
  for (const t of CONTROL_TOKENS) add(t, TOKEN_CONTROL)
  add(SPACE, TOKEN_NORMAL)
  for (let c = 0x21; c <= 0x7e; c++) add(String.fromCharCode(c), TOKEN_NORMAL)
  // Each word as "▁word", reachable from "▁w", "▁wo", ...; SentencePiece
  // only merges two symbols into a piece that is itself in the vocabulary.
  for (const word of WORDS) {
    const piece = SPACE + word
    for (let end = 2; end <= piece.length; end++) add(piece.slice(0, end), TOKEN_NORMAL)
  }
  for (const p of PUNCTUATION_PIECES) add(p.replaceAll(' ', SPACE), TOKEN_NORMAL)
  // Letter pairs help any other text merge into fewer tokens.
  const letters = 'etaoinshrdlucmfwypvbgkjqxz'
  for (const a of letters) for (const b of letters) add(a + b, TOKEN_NORMAL)
  for (let i = 0; tokens.length < size; i++) add(`<unused${i}>`, TOKEN_UNUSED)

  // Earlier (shorter, more basic) pieces merge first.
  const scores = tokens.map((_, id) => types[id] === TOKEN_NORMAL ? -id : 0)
  const suppressed: number[] = []
  for (let id = 0; id < tokens.length; id++) {
    // Keep "\n" as a byte token the model may emit; everything non-textual is pushed down.
    if (types[id] !== TOKEN_NORMAL && tokens[id] !== '<0x0A>') suppressed.push(id)
  }
  return { tokens, scores, types, suppressed }
}

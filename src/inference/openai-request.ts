/**
 * Validation of the OpenAI request bodies the client's HTTP API accepts.
 * Each endpoint has an allowlist of fields: anything else is refused rather
 * than silently ignored, because a field we drop (tools, logprobs, n > 1)
 * would change what the caller gets back without telling them. Every error
 * is an `InferenceError('bad_request')` whose `param` names the field, as
 * OpenAI's `param` does.
 */
import { InferenceError, type InferenceKind } from './types.js'

/** Upper bound on max_tokens / max_completion_tokens. */
export const MAX_TOKENS_LIMIT = 1_000_000
/** OpenAI accepts up to four stop sequences. */
export const MAX_STOP_SEQUENCES = 4

export interface ParsedRequest {
  kind: InferenceKind
  model: string
  /** The validated body without `stream` / `stream_options`; fields sent as null are left out. */
  body: Record<string, unknown>
  /** The completion token limit the caller asked for, or null for the network's default. */
  maxTokens: number | null
  stream: boolean
  /** `stream_options.include_usage`: send a final usage chunk before [DONE]. */
  includeUsage: boolean
  n: 1
}

/** A check returns the value to keep, or DROP for a no-op value (such as `echo: false`). */
type FieldCheck = (value: unknown, param: string) => unknown
const DROP = Symbol('drop')

const CHAT_ROLES = new Set(['system', 'developer', 'user', 'assistant'])

function bad (param: string | null, message: string): InferenceError {
  return new InferenceError('bad_request', message, { param })
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** A short description of a wrong value for "(got ...)": numbers and booleans in full, other things by kind. */
function got (value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'an array'
  switch (typeof value) {
    case 'number': case 'boolean': return String(value)
    case 'string': return value.length <= 40 ? JSON.stringify(value) : 'a long string'
    case 'object': return 'an object'
    default: return typeof value
  }
}

function fail (param: string, expected: string, value: unknown): never {
  throw bad(param, `${param}: expected ${expected} (got ${got(value)})`)
}

function rejectUnknownKeys (value: Record<string, unknown>, allowed: ReadonlySet<string>, prefix: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) {
      const param = prefix === '' ? key : `${prefix}.${key}`
      throw bad(param, `unknown field '${param}'`)
    }
  }
}

const nonEmptyString: FieldCheck = (value, param) => {
  if (typeof value !== 'string' || value.length === 0) fail(param, 'a non-empty string', value)
  return value
}

const anyString: FieldCheck = (value, param) => {
  if (typeof value !== 'string') fail(param, 'a string', value)
  return value
}

const boolean: FieldCheck = (value, param) => {
  if (typeof value !== 'boolean') fail(param, 'true or false', value)
  return value
}

function numberFrom (min: number, max: number): FieldCheck {
  return (value, param) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) fail(param, `a number from ${min} to ${max}`, value)
    return value
  }
}

const tokenLimit: FieldCheck = (value, param) => {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_TOKENS_LIMIT) {
    fail(param, `a whole number of tokens from 1 to ${MAX_TOKENS_LIMIT}`, value)
  }
  return value
}

const seed: FieldCheck = (value, param) => {
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) fail(param, 'a whole number', value)
  return value
}

const onlyOneChoice: FieldCheck = (value, param) => {
  if (value !== 1) throw bad(param, `${param}: only n=1 is supported; send separate requests for more choices (got ${got(value)})`)
  return value
}

const stop: FieldCheck = (value, param) => {
  if (typeof value === 'string') {
    if (value.length === 0) fail(param, 'a non-empty string or an array of them', value)
    return value
  }
  if (!Array.isArray(value)) fail(param, `a string or an array of at most ${MAX_STOP_SEQUENCES} strings`, value)
  if (value.length > MAX_STOP_SEQUENCES) throw bad(param, `${param}: expected at most ${MAX_STOP_SEQUENCES} stop sequences (got ${value.length})`)
  // Array.isArray narrows to any[]; keep the elements unknown until checked.
  const list: unknown[] = value
  list.forEach((s, i) => { nonEmptyString(s, `${param}[${i}]`) })
  return [...list]
}

const STREAM_OPTION_KEYS = new Set(['include_usage'])
const streamOptions: FieldCheck = (value, param) => {
  if (!isObject(value)) fail(param, 'an object such as {"include_usage": true}', value)
  rejectUnknownKeys(value, STREAM_OPTION_KEYS, param)
  const out: Record<string, unknown> = {}
  if (value.include_usage !== undefined && value.include_usage !== null) out.include_usage = boolean(value.include_usage, `${param}.include_usage`)
  return out
}

const RESPONSE_FORMAT_KEYS = new Set(['type'])
const responseFormat: FieldCheck = (value, param) => {
  if (!isObject(value)) fail(param, 'an object such as {"type": "text"}', value)
  rejectUnknownKeys(value, RESPONSE_FORMAT_KEYS, param)
  if (value.type !== 'text') throw bad(`${param}.type`, `${param}.type: only "text" is supported (got ${got(value.type)})`)
  return { type: 'text' }
}

/** Not every backend can bias logits, so a non-empty map is refused; `{}` asks for nothing and is dropped. */
const logitBias: FieldCheck = (value, param) => {
  if (!isObject(value)) fail(param, 'an object', value)
  if (Object.keys(value).length > 0) throw bad(param, `${param}: logit_bias is not supported`)
  return DROP
}

/** Refuses a feature whose only accepted value is the one that turns it off. */
function unsupportedUnless (noop: unknown, what: string): FieldCheck {
  return (value, param) => {
    if (value === noop) return DROP
    throw bad(param, `${param}: ${what}`)
  }
}

const CONTENT_PART_KEYS = new Set(['type', 'text'])
function messageContent (value: unknown, param: string): unknown {
  if (typeof value === 'string') return value
  if (!Array.isArray(value)) fail(param, 'a string or an array of {"type": "text", "text": ...} parts', value)
  return (value as unknown[]).map((part, j) => {
    const at = `${param}[${j}]`
    if (!isObject(part)) fail(at, 'an object {"type": "text", "text": ...}', part)
    rejectUnknownKeys(part, CONTENT_PART_KEYS, at)
    if (part.type !== 'text') throw bad(`${at}.type`, `${at}.type: only text content parts are supported (got ${got(part.type)})`)
    return { type: 'text', text: anyString(part.text, `${at}.text`) }
  })
}

const MESSAGE_KEYS = new Set(['role', 'content', 'name'])
const messages: FieldCheck = (value, param) => {
  if (!Array.isArray(value) || value.length === 0) fail(param, 'a non-empty array of messages', value)
  return (value as unknown[]).map((message, i) => {
    const at = `${param}[${i}]`
    if (!isObject(message)) fail(at, 'a message object {"role": ..., "content": ...}', message)
    rejectUnknownKeys(message, MESSAGE_KEYS, at)
    if (typeof message.role !== 'string' || !CHAT_ROLES.has(message.role)) fail(`${at}.role`, `one of ${[...CHAT_ROLES].join(', ')}`, message.role)
    if (message.content === undefined || message.content === null) throw bad(`${at}.content`, `${at}.content: required`)
    const out: Record<string, unknown> = { role: message.role, content: messageContent(message.content, `${at}.content`) }
    if (message.name !== undefined && message.name !== null) out.name = anyString(message.name, `${at}.name`)
    return out
  })
}

const prompt: FieldCheck = (value, param) => {
  if (Array.isArray(value)) throw bad(param, `${param}: only a single string prompt is supported`)
  if (typeof value !== 'string') fail(param, 'a string', value)
  return value
}

/** Fields both endpoints share, in the order they are checked. */
const COMMON_FIELDS: Array<[string, FieldCheck]> = [
  ['model', nonEmptyString],
  ['max_tokens', tokenLimit],
  ['temperature', numberFrom(0, 2)],
  ['top_p', numberFrom(0, 1)],
  ['n', onlyOneChoice],
  ['stream', boolean],
  ['stream_options', streamOptions],
  ['stop', stop],
  ['seed', seed],
  ['presence_penalty', numberFrom(-2, 2)],
  ['frequency_penalty', numberFrom(-2, 2)],
  ['user', anyString],
  ['logit_bias', logitBias]
]

const CHAT_FIELDS: ReadonlyMap<string, FieldCheck> = new Map<string, FieldCheck>([
  ['messages', messages],
  ...COMMON_FIELDS,
  ['max_completion_tokens', tokenLimit],
  ['response_format', responseFormat]
])

const COMPLETION_FIELDS: ReadonlyMap<string, FieldCheck> = new Map<string, FieldCheck>([
  ['prompt', prompt],
  ...COMMON_FIELDS,
  ['echo', unsupportedUnless(false, 'echo is not supported (the prompt is not repeated in the output)')],
  ['suffix', unsupportedUnless('', 'suffix is not supported (no text insertion)')]
])

/** The allowlists, for documentation and tests. */
export const CHAT_REQUEST_FIELDS: readonly string[] = [...CHAT_FIELDS.keys()]
export const COMPLETION_REQUEST_FIELDS: readonly string[] = [...COMPLETION_FIELDS.keys()]

function parse (kind: InferenceKind, json: unknown, fields: ReadonlyMap<string, FieldCheck>, required: string[]): ParsedRequest {
  if (!isObject(json)) throw bad(null, `the request body must be a JSON object (got ${got(json)})`)
  // Unknown fields first, so a misspelt field is named even when others are also wrong.
  rejectUnknownKeys(json, new Set(fields.keys()), '')
  const body: Record<string, unknown> = {}
  for (const [key, check] of fields) {
    const value = json[key]
    // OpenAI clients send null for "not set"; treat it as absent.
    if (value === undefined || value === null) continue
    const checked = check(value, key)
    if (checked !== DROP) body[key] = checked
  }
  for (const key of required) {
    if (body[key] === undefined) throw bad(key, `${key}: required`)
  }

  const stream = body.stream === true
  const options = body.stream_options as { include_usage?: boolean } | undefined
  // OpenAI refuses stream_options without streaming; so do we, rather than ignore it.
  if (options !== undefined && !stream) throw bad('stream_options', 'stream_options: only allowed when stream is true')
  delete body.stream
  delete body.stream_options

  const limits = [body.max_tokens, body.max_completion_tokens].filter((v): v is number => typeof v === 'number')
  return {
    kind,
    model: body.model as string,
    body,
    // Both limits bound the output, so the smaller one holds when both are sent.
    maxTokens: limits.length === 0 ? null : Math.min(...limits),
    stream,
    includeUsage: options?.include_usage === true,
    n: 1
  }
}

/** Validates a `POST /v1/chat/completions` body; throws `InferenceError('bad_request')` naming the field. */
export function parseChatRequest (json: unknown): ParsedRequest {
  return parse('chat', json, CHAT_FIELDS, ['model', 'messages'])
}

/** Validates a `POST /v1/completions` body; throws `InferenceError('bad_request')` naming the field. */
export function parseCompletionRequest (json: unknown): ParsedRequest {
  return parse('completion', json, COMPLETION_FIELDS, ['model', 'prompt'])
}

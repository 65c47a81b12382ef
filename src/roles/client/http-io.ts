/** Reading requests and writing JSON answers and errors for the client's HTTP API, on `node:http`. */
import { randomUUID } from 'node:crypto'
import { InferenceError } from '../../inference/types.js'
import type { IncomingMessage, ServerResponse } from 'node:http'

/** An HTTP-level refusal that is not an inference error (unknown route, wrong method, foreign Host). */
export class HttpProblem extends Error {
  constructor (readonly status: number, readonly code: string, message: string, readonly headers: Record<string, string> = {}) {
    super(message)
  }
}

export interface ErrorBody { message: string, type: string, param: string | null, code: string }

export function errorType (status: number): string {
  if (status === 429) return 'rate_limit_exceeded'
  return status >= 500 ? 'server_error' : 'invalid_request_error'
}

export function inferenceErrorBody (err: InferenceError): ErrorBody {
  return { message: err.message, type: errorType(err.httpStatus), param: err.param, code: err.code }
}

export function newRequestId (): string {
  return randomUUID().replaceAll('-', '')
}

export function sendJson (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return
  const data = JSON.stringify(body)
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) })
  res.end(data)
}

/** Resolves when the response can take more data, or is gone. */
export async function writable (res: ServerResponse): Promise<void> {
  if (res.destroyed) return
  await new Promise<void>(resolve => {
    const done = (): void => {
      res.off('drain', done)
      res.off('close', done)
      resolve()
    }
    res.on('drain', done)
    res.on('close', done)
  })
}

export function readBody (req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const tooLarge = (): InferenceError => new InferenceError('too_large', `the request body exceeds the limit of ${maxBytes} bytes`)
  const declared = Number(req.headers['content-length'])
  // Refused before reading: Node then discards the rest of the body, so the connection stays usable.
  if (declared > maxBytes) return Promise.reject(tooLarge())
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let over = false
    req.on('data', (chunk: Buffer) => {
      if (over) return // keep reading and dropping, so the client can finish sending and read the 413
      size += chunk.length
      if (size > maxBytes) {
        over = true
        chunks.length = 0
        reject(tooLarge())
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => { if (!over) resolve(Buffer.concat(chunks, size)) })
    req.on('error', () => { reject(new InferenceError('cancelled', 'the client went away while sending the request')) })
    req.on('close', () => { if (!req.complete) reject(new InferenceError('cancelled', 'the client went away while sending the request')) })
  })
}

export function parseJsonBody (body: Buffer): unknown {
  if (body.length === 0) throw new InferenceError('bad_request', 'the request body is empty; expected a JSON object')
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  } catch {
    throw new InferenceError('bad_request', 'the request body is not valid UTF-8')
  }
  try {
    return JSON.parse(text)
  } catch (err) {
    throw new InferenceError('bad_request', `the request body is not valid JSON: ${(err as Error).message}`)
  }
}

export function requireJsonContentType (req: IncomingMessage): void {
  // Strict on purpose: a web page can POST text/plain or form bodies to 127.0.0.1 without a
  // CORS preflight, but not application/json, so this keeps other sites from spending the wallet.
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
  if (type !== 'application/json') {
    throw new InferenceError('bad_request', `Content-Type must be application/json (got ${type === '' ? 'none' : JSON.stringify(type)})`)
  }
}

/**
 * Sends one streaming chat completion to an OpenAI-compatible API and reads
 * it to the end, timing the first content chunk. Used by the devnet's sample
 * request and the overhead benchmark (apps use the official SDK).
 */
import { createParser } from 'eventsource-parser'

export interface StreamedChat {
  text: string
  /** Chunks that carried content. */
  chunks: number
  /** ms from the request to the first content chunk; undefined when none came. */
  firstChunkMs?: number
  totalMs: number
  /** The chunk that carried `usage` (with include_usage), if any. */
  final?: Record<string, unknown>
}

export async function streamChat (apiUrl: string, body: Record<string, unknown>): Promise<StreamedChat> {
  const started = performance.now()
  const res = await fetch(`${apiUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true })
  })
  if (!res.ok || res.body == null) throw new Error(`HTTP ${res.status}: ${await res.text()}`)
  const out: StreamedChat = { text: '', chunks: 0, totalMs: 0 }
  let failure: string | undefined
  const parser = createParser({
    onEvent: (event) => {
      if (event.data === '[DONE]') return
      const data = JSON.parse(event.data) as { error?: { message: string }, choices?: Array<{ delta?: { content?: string } }>, usage?: unknown }
      if (data.error != null) failure ??= data.error.message
      const piece = data.choices?.[0]?.delta?.content ?? ''
      if (piece !== '') {
        out.firstChunkMs ??= performance.now() - started
        out.chunks++
        out.text += piece
      }
      if (data.usage != null) out.final = data as Record<string, unknown>
    }
  })
  const decoder = new TextDecoder()
  const reader = res.body.getReader()
  while (true) {
    const { done, value } = await reader.read()
    if (done) break
    parser.feed(decoder.decode(value, { stream: true }))
  }
  if (failure != null) throw new Error(`failed mid-stream: ${failure}`)
  out.totalMs = performance.now() - started
  return out
}

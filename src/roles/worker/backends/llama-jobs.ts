/**
 * The llama.cpp backend's per-model state (its context sequences, free and
 * waited for) and how a chat or completion request becomes a run on one
 * sequence, with its prompt tokens counted first.
 */
import { InferenceError } from '../../../inference/types.js'
import { commonOptions, parsePrompt, toChatHistory } from './llama-request.js'
import type { RunOptions, RunResult } from './llama-request.js'
import type { BackendModel } from '../../../inference/types.js'
import type { ChatWrapper, LlamaChat, LlamaChatResponseChunk, LlamaCompletion, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp'

export interface Slot {
  sequence: LlamaContextSequence
  chat: LlamaChat
  completion: LlamaCompletion
}

export interface Waiter {
  resolve: (slot: Slot) => void
  reject: (err: Error) => void
}

export interface LoadedModel {
  info: BackendModel
  model: LlamaModel
  context: LlamaContext
  chatWrapper: ChatWrapper
  free: Slot[]
  waiters: Waiter[]
}

export interface Prepared {
  promptTokens: number
  /** The field a too-long prompt is blamed on. */
  param: 'messages' | 'prompt'
  run: (slot: Slot, options: RunOptions) => Promise<RunResult>
}

export function prepareChat (entry: LoadedModel, body: Record<string, unknown>): Prepared {
  const history = toChatHistory(body.messages)
  let promptTokens: number
  try {
    promptTokens = entry.chatWrapper.generateContextState({ chatHistory: history }).contextText.tokenize(entry.model.tokenizer).length
  } catch (err) {
    throw new InferenceError('bad_request', `the messages cannot be formatted with the chat template of ${entry.info.name}: ${err instanceof Error ? err.message : String(err)}`, { param: 'messages', cause: err })
  }
  return {
    promptTokens,
    param: 'messages',
    run: async (slot, o) => {
      const res = await slot.chat.generateResponse(history, {
        ...commonOptions(o),
        onResponseChunk: (chunk: LlamaChatResponseChunk) => {
          o.onPiece(chunk.text, chunk.type === 'segment' && chunk.segmentType === 'thought', chunk.tokens.length)
        }
      })
      return { stopReason: res.metadata.stopReason }
    }
  }
}

export function prepareCompletion (entry: LoadedModel, body: Record<string, unknown>): Prepared {
  const prompt = parsePrompt(body.prompt)
  const model = entry.model
  // LlamaCompletion prepends the BOS token itself and then expects the text
  // tokenized without the leading space SentencePiece would add.
  const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null
  const tokens: Token[] = model.tokenize(prompt, false, bos !== null ? 'trimLeadingSpace' : undefined)
  return {
    promptTokens: tokens.length + (bos !== null ? 1 : 0),
    param: 'prompt',
    run: async (slot, o) => {
      const res = await slot.completion.generateCompletionWithMeta(tokens, {
        ...commonOptions(o),
        onTextChunk: (text: string) => { o.onPiece(text, false, 0) },
        // The prompt was checked to fit; never let node-llama-cpp cut it or shift the context.
        contextShiftSize: 1,
        disableContextShift: true
      })
      return { stopReason: res.metadata.stopReason }
    }
  }
}

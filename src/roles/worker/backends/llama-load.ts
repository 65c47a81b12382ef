/**
 * Starting llama.cpp and loading one model for the llama backend: the
 * CPU or GPU build, the context with one sequence per concurrent job, and
 * the chat and completion drivers on each sequence. A model without a path
 * is the synthetic random-weight test model, written on first use.
 */
import { basename } from 'node:path'
import { ensureSyntheticModel, SYNTHETIC_MODEL_NAME } from './gguf.js'
import type { LoadedModel, Slot } from './llama-jobs.js'
import type { Llama } from 'node-llama-cpp'

export type NodeLlamaCpp = typeof import('node-llama-cpp')

/** Load progress is reported in steps of this fraction. */
const PROGRESS_STEP = 0.25

export interface LoadOptions {
  dataDir: string
  /** Context sequences: the jobs the model runs at once. */
  maxConcurrent: number
  threads: number
  log: (line: string) => void
}

/** The llama.cpp build to use: a GPU build when asked for and usable, else the CPU one. */
export async function getLlama (nlc: NodeLlamaCpp, gpu: boolean, log: (line: string) => void): Promise<Llama> {
  const common = {
    build: 'never' as const,
    skipDownload: true,
    progressLogs: false,
    logLevel: nlc.LlamaLogLevel.warn,
    logger: (level: string, message: string) => { log(`llama.cpp ${level}: ${message.trim()}`) }
  }
  if (gpu) {
    try {
      return await nlc.getLlama({ ...common, gpu: 'auto' })
    } catch (err) {
      log(`no usable GPU build of llama.cpp (${err instanceof Error ? err.message : String(err)}); using the CPU`)
    }
  }
  return await nlc.getLlama({ ...common, gpu: false })
}

/** Loads one model with a context of `maxConcurrent` sequences, each with its chat and completion driver. */
export async function loadModel (nlc: NodeLlamaCpp, llama: Llama, m: { name: string, path?: string, contextLength: number }, o: LoadOptions, onProgress: (line: string) => void): Promise<LoadedModel> {
  let path = m.path
  if (path === undefined) {
    const made = await ensureSyntheticModel(o.dataDir)
    path = made.path
    const line = `${m.name}: synthetic test model with random weights: output is noise (${made.created ? 'generated' : 'reusing'} ${path})`
    onProgress(line)
    o.log(line)
  }
  let reported = -1
  const model = await llama.loadModel({
    modelPath: path,
    gpuLayers: llama.gpu === false ? 0 : 'auto',
    onLoadProgress: (p: number) => {
      // A few lines per model, not one per callback.
      const step = Math.floor(p / PROGRESS_STEP)
      if (step > reported) {
        reported = step
        onProgress(`loading ${m.name}: ${Math.round(p * 100)}%`)
      }
    }
  })
  try {
    const contextLength = Math.min(model.trainContextSize > 0 ? model.trainContextSize : m.contextLength, m.contextLength)
    const context = await model.createContext({
      contextSize: contextLength,
      sequences: o.maxConcurrent,
      threads: o.threads
    })
    const chatWrapper = nlc.resolveChatWrapper(model, { warningLogs: false })
    const free: Slot[] = []
    for (let i = 0; i < o.maxConcurrent; i++) {
      const sequence = context.getSequence()
      free.push({
        sequence,
        chat: new nlc.LlamaChat({ contextSequence: sequence, chatWrapper }),
        completion: new nlc.LlamaCompletion({ contextSequence: sequence })
      })
    }
    const general = model.fileInfo.metadata.general
    const synthetic = m.path === undefined || general.name === SYNTHETIC_MODEL_NAME
    const parameters = model.fileInsights.totalParameters
    const description = synthetic
      ? `synthetic test model with random weights (${parameters} parameters, llama architecture): output is noise`
      : `${general.name ?? basename(path)} (${model.typeDescription}, ${parameters} parameters, file ${basename(path)})`
    onProgress(`${m.name}: ${description}; context ${contextLength} tokens × ${o.maxConcurrent} sequences, chat format ${chatWrapper.wrapperName}`)
    return {
      info: { name: m.name, contextLength, weightsPath: path, synthetic, description },
      model,
      context,
      chatWrapper,
      free,
      waiters: []
    }
  } catch (err) {
    await model.dispose()
    throw err
  }
}

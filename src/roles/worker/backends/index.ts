/**
 * Builds the configured inference backend. llama.cpp is loaded only when
 * the llama backend is chosen, so other workers start without it.
 */
import { readFile } from 'node:fs/promises'
import { ConfigError } from '../../../errors.js'
import { OpenAIUpstreamBackend } from './openai-upstream.js'
import { SyntheticBackend } from './synthetic.js'
import type { NodeConfig } from '../../../config/schema.js'
import type { InferenceBackend } from '../../../inference/types.js'

export async function createBackend (config: NodeConfig, log: (line: string) => void): Promise<InferenceBackend> {
  const w = config.worker
  const models = w.models.map(m => ({ name: m.name, contextLength: m.contextLength }))
  const maxConcurrent = Math.max(...w.models.map(m => m.maxConcurrent))
  switch (w.backend) {
    case 'synthetic':
      return new SyntheticBackend({ models, ...w.synthetic, maxConcurrent: w.models.reduce((n, m) => n + m.maxConcurrent, 0) })
    case 'openai': {
      if (w.upstream.url == null) throw new ConfigError('worker.upstream.url', 'the openai backend needs the upstream URL (--upstream http://127.0.0.1:8000/v1)')
      let apiKey: string | undefined
      if (w.upstream.apiKeyFile != null) {
        try {
          apiKey = (await readFile(w.upstream.apiKeyFile, 'utf8')).trim()
        } catch (err) {
          throw new ConfigError('worker.upstream.apiKeyFile', `cannot read ${w.upstream.apiKeyFile} (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
        }
      }
      return new OpenAIUpstreamBackend({ url: w.upstream.url, apiKey, models, healthIntervalMs: w.upstream.healthIntervalMs, log })
    }
    case 'llama': {
      const { LlamaBackend } = await import('./llama.js')
      return new LlamaBackend({
        models: w.models.map(m => ({ name: m.name, path: m.path, contextLength: m.contextLength })),
        dataDir: config.dataDir,
        maxConcurrent,
        threads: w.llama.threads === 0 ? undefined : w.llama.threads,
        gpu: w.llama.gpu,
        log
      })
    }
  }
}

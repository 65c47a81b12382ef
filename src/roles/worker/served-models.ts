/**
 * Turns the configured models into what a worker announces, with the content
 * hash of each weights file. Hashing a multi-GiB file takes seconds, so the
 * hash is cached in the data dir by path, size and modification time.
 */
import { createHash } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { ConfigError } from '../../errors.js'
import { writeFileAtomic } from '../../ops/atomic-write.js'
import { MAX_DESCRIPTION } from '../capacity/announcement.js'
import type { ServedModel } from './capacity-announcer.js'
import type { BackendModel } from '../../inference/types.js'
import type { NodeConfig } from '../../config/schema.js'

const CACHE_FILE = 'weights-hashes.json'

type HashCache = Record<string, { size: number, mtimeMs: number, sha256: string }>

/**
 * `backendModels` (by name) supply what the backend knows better than the
 * config: the weights file it actually loaded (a generated one, say), whether
 * it is a synthetic test model, and a description.
 */
export async function servedModels (models: NodeConfig['worker']['models'], dataDir: string, backendModels: BackendModel[] = []): Promise<ServedModel[]> {
  const cachePath = join(dataDir, CACHE_FILE)
  const cache = await readCache(cachePath)
  let changed = false
  const out: ServedModel[] = []
  for (const [i, m] of models.entries()) {
    const loaded = backendModels.find(b => b.name === m.name)
    const weightsPath = loaded?.weightsPath ?? m.path
    let weightsHash = new Uint8Array(0)
    if (weightsPath != null) {
      const path = resolve(weightsPath)
      const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
        throw new ConfigError(`worker.models[${i}].path`, `cannot read the weights file ${path} (${err.code ?? err.message})`)
      })
      const hit = cache[path]
      let hex: string
      if (hit != null && hit.size === info.size && hit.mtimeMs === info.mtimeMs) {
        hex = hit.sha256
      } else {
        hex = await sha256File(path)
        cache[path] = { size: info.size, mtimeMs: info.mtimeMs, sha256: hex }
        changed = true
      }
      weightsHash = Uint8Array.from(Buffer.from(hex, 'hex'))
    }
    out.push({
      name: m.name,
      weightsHash,
      contextLength: m.contextLength,
      pricePromptPerM: BigInt(m.pricePromptPerM),
      priceCompletionPerM: BigInt(m.priceCompletionPerM),
      maxConcurrent: m.maxConcurrent,
      synthetic: loaded?.synthetic ?? false,
      description: (loaded?.description ?? '').slice(0, MAX_DESCRIPTION)
    })
  }
  if (changed) {
    await writeFileAtomic(cachePath, JSON.stringify(cache, null, 2))
  }
  return out
}

async function readCache (path: string): Promise<HashCache> {
  try {
    const parsed: unknown = JSON.parse(await readFile(path, 'utf8'))
    return parsed != null && typeof parsed === 'object' && !Array.isArray(parsed) ? parsed as HashCache : {}
  } catch {
    // missing or damaged: it is only a cache
    return {}
  }
}

async function sha256File (path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

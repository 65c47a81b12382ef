/** Shared by the benchmarks: quantiles, rounding, a settle pause, and writing results. */
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { packageRoot } from '../src/package-info.js'

export function quantile (values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const pos = (sorted.length - 1) * q
  const lo = Math.floor(pos)
  const hi = Math.ceil(pos)
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo)
}

export const median = (v: number[]): number => quantile(v, 0.5)
export const round = (v: number, d = 2): number => Math.round(v * 10 ** d) / 10 ** d

/** Lets timers drain and collects garbage (with --expose-gc) before a measurement. */
export async function settle (): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 200))
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc != null) { gc(); gc() }
}

/** Writes bench/results/<name>.json and says where. */
export async function writeResult (name: string, result: unknown): Promise<void> {
  const out = join(packageRoot(), 'bench', 'results')
  await mkdir(out, { recursive: true })
  await writeFile(join(out, `${name}.json`), JSON.stringify(result, null, 2) + '\n')
  console.log(`  wrote ${join('bench', 'results', `${name}.json`)}`)
}

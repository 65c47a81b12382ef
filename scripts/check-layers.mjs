#!/usr/bin/env node
/**
 * Imports in src/ only point down the layers:
 *
 *   cli → roles → jobs / settlement / tee / config → inference → p2p → ops → base
 *
 * (base: errors, polyfills, package-info, the generated protobuf code in gen/).
 * Folders on one level may import each other (the cycle check keeps that
 * acyclic). Type-only imports count too: a type from above is still a
 * dependency on the layer above. Exits 1 naming every import that points up.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'

const LAYERS = [
  ['cli'],
  ['roles'],
  ['jobs', 'settlement', 'tee', 'config'],
  ['inference'],
  ['p2p'],
  ['ops'],
  ['errors', 'polyfills', 'package-info', 'gen', 'index']
]
const rank = new Map(LAYERS.flatMap((names, i) => names.map(n => [n, i])))
// another source root can be given (the tests check that an upward import fails it)
const root = process.argv[2] ?? join(dirname(new URL(import.meta.url).pathname), '..', 'src')

function files (dir) {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : []
  })
}

function layerOf (path) {
  const top = relative(root, path).split('/')[0].replace(/\.(ts|js)$/, '')
  return top
}

const problems = []
for (const file of files(root)) {
  const from = layerOf(file)
  if (!rank.has(from)) { problems.push(`${relative(root, file)}: src/${from} is in no layer; add it to scripts/check-layers.mjs`); continue }
  const text = readFileSync(file, 'utf8')
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
    const target = normalize(join(dirname(file), m[1]))
    if (!target.startsWith(root + '/')) continue
    const to = layerOf(target)
    if (!rank.has(to)) { problems.push(`${relative(root, file)} imports src/${to}, which is in no layer`); continue }
    if (rank.get(to) < rank.get(from)) problems.push(`${relative(root, file)} (${from}) imports ${relative(root, target)} (${to}), a layer above it`)
  }
}
if (problems.length > 0) {
  for (const p of problems) console.error(p)
  console.error(`${problems.length} import(s) point up the layers`)
  process.exit(1)
}
console.log('imports point down the layers')

#!/usr/bin/env node
// Compiles contracts/*.tolk with the pinned @ton/tolk-js into contracts/build/<name>.compiled.ts.
//   node scripts/compile-contracts.mjs          write the compiled code
//   node scripts/compile-contracts.mjs --check  fail when the checked-in code is stale
import { readFileSync } from 'node:fs'
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runTolkCompiler } from '@ton/tolk-js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const sources = join(root, 'contracts')
const out = join(sources, 'build')
const check = process.argv.includes('--check')

function render (name, result) {
  return [
    `/* Compiled from contracts/${name}.tolk by Tolk ${result.tolkVersion} (npm run contracts). Do not edit. */`,
    `export const codeBoc64 = '${result.codeBoc64}'`,
    `export const codeHashHex = '${result.codeHashHex}'`,
    `export const tolkVersion = '${result.tolkVersion}'`,
    ''
  ].join('\n')
}

let stale = 0
for (const file of (await readdir(sources)).filter(f => f.endsWith('.tolk')).sort()) {
  const name = file.slice(0, -'.tolk'.length)
  const result = await runTolkCompiler({
    entrypointFileName: file,
    fsReadCallback: path => {
      // only files inside contracts/ are read
      const resolved = join(sources, path)
      if (!resolved.startsWith(sources)) throw new Error(`${path} is outside contracts/`)
      return readFileSync(resolved, 'utf8')
    }
  })
  if (result.status !== 'ok') {
    console.error(`contracts/${file}: ${result.message}`)
    process.exit(1)
  }
  const target = join(out, `${name}.compiled.ts`)
  const text = render(name, result)
  if (check) {
    const current = await readFile(target, 'utf8').catch(() => '')
    if (current !== text) {
      console.error(`stale compiled code: contracts/build/${name}.compiled.ts differs from contracts/${file}; run npm run contracts`)
      stale++
    }
  } else {
    await writeFile(target, text)
    console.log(`contracts/${file} -> contracts/build/${name}.compiled.ts (code hash ${result.codeHashHex})`)
  }
}
if (stale > 0) process.exit(1)
if (check) console.log('compiled contract code is current')

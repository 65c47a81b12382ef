#!/usr/bin/env node
/**
 * Bundles the client core (src/roles/client/core.ts) for browsers with
 * esbuild and fails when anything in it imports a Node builtin (node:*, fs,
 * crypto, ...). The one exception is a dependency's own guarded fallback
 * that a browser never runs (listed below with why).
 */
import { builtinModules } from 'node:module'
import { dirname, join } from 'node:path'
import { build } from 'esbuild'

const root = join(dirname(new URL(import.meta.url).pathname), '..')
// another entry can be given (the tests check that a Node builtin fails it)
const entry = process.argv[2] ?? join(root, 'src/roles/client/core.ts')
/** importer (relative to the repository) → builtins it may name, and why. */
const ALLOWED = {
  // `require('crypto')` only where `self.crypto` is missing (old Node); browsers take the branch before it
  'node_modules/tweetnacl/nacl-fast.js': ['crypto']
}
const isBuiltin = (path) => path.startsWith('node:') || builtinModules.includes(path.split('/')[0])

const result = await build({
  entryPoints: [entry],
  bundle: true,
  platform: 'browser',
  format: 'esm',
  write: false,
  metafile: true,
  logLevel: 'silent',
  plugins: [{
    name: 'node-builtins',
    setup (b) {
      // resolve builtins as external so every one is reported, not just the first
      b.onResolve({ filter: /.*/ }, args => isBuiltin(args.path) ? { path: args.path, external: true } : undefined)
    }
  }]
}).catch((err) => {
  for (const e of err.errors ?? []) console.error(`${e.location?.file ?? '?'}: ${e.text}`)
  console.error('the client core does not bundle for browsers')
  process.exit(1)
})

const problems = []
for (const [file, info] of Object.entries(result.metafile.inputs)) {
  for (const imp of info.imports) {
    if (!imp.external || !isBuiltin(imp.path)) continue
    if (ALLOWED[file]?.includes(imp.path)) continue
    problems.push(`${file} imports ${imp.path}`)
  }
}
if (problems.length > 0) {
  for (const p of problems) console.error(p)
  console.error(`the client core imports ${problems.length} Node builtin(s); put them behind an interface with a browser implementation`)
  process.exit(1)
}
const bytes = result.outputFiles[0].contents.byteLength
console.log(`${process.argv[2] == null ? 'the client core' : entry} bundles for browsers without Node builtins (${Object.keys(result.metafile.inputs).length} modules, ${(bytes / 1024).toFixed(0)} KiB unminified)`)

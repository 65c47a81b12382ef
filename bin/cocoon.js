#!/usr/bin/env node
// Entry point of the `cocoon` command; the code lives in dist/ (built by
// `npm install` through the prepare script, or by `npm run build`).
import { existsSync } from 'node:fs'

const entry = new URL('../dist/src/cli/main.js', import.meta.url)
if (!existsSync(entry)) {
  process.stderr.write('cocoon: not built yet; run `npm install` (or `npm run build`) in the cocoon-p2p directory\n')
  process.exit(1)
}
const { main } = await import(entry.href)
process.exit(await main(process.argv.slice(2)))

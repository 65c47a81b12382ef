#!/usr/bin/env node
// Entry point of the `cocoon` command; the code lives in dist/ (npm run build).
import { main } from '../dist/src/cli/main.js'

const code = await main(process.argv.slice(2))
process.exit(code)

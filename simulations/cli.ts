/**
 * `npm run sim -- <scenario> [--seed N] [--out DIR]` (also `cocoon sim`):
 * runs a scenario and writes simulations/results/<scenario>/result.json,
 * report.html and summary.txt. Exits 0 when every invariant held, 1 when one
 * broke, 2 on bad input.
 */
import '../src/polyfills.js'
import { mkdir, writeFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { parseArgs } from 'node:util'
import { packageRoot } from '../src/package-info.js'
import { renderHtmlReport } from './report/html.js'
import { renderTextSummary } from './report/summary.js'
import { runSimulation } from './runner.js'
import { loadScenario, ScenarioError } from './scenario.js'

export async function simMain (args: string[], out: (line: string) => void = line => { process.stdout.write(line + '\n') }): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args, allowPositionals: true, options: { seed: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h' } } })
  } catch (err) {
    process.stderr.write(`sim: ${(err as Error).message}\n`)
    return 2
  }
  const name = parsed.positionals[0]
  if (parsed.values.help === true || name == null) {
    out('usage: npm run sim -- <scenario> [--seed N] [--out DIR]\n  scenarios: simulations/scenarios/*.json (smoke, steady, churn, ...), or a path to a .json file')
    return name == null && parsed.values.help !== true ? 2 : 0
  }
  const seed = parsed.values.seed == null ? undefined : Number(parsed.values.seed)
  if (seed != null && !(Number.isInteger(seed) && seed >= 0)) {
    process.stderr.write(`sim: --seed expects a whole number, got ${parsed.values.seed}\n`)
    return 2
  }
  let scenario
  try {
    scenario = await loadScenario(name)
  } catch (err) {
    if (err instanceof ScenarioError) {
      process.stderr.write(`sim: ${err.message}\n`)
      return 2
    }
    throw err
  }
  const result = await runSimulation(scenario, { seed })
  const dir = parsed.values.out ?? join(packageRoot(), 'simulations', 'results', scenario.name)
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'result.json'), JSON.stringify(result, null, 2) + '\n')
  await writeFile(join(dir, 'report.html'), renderHtmlReport(result))
  const summary = renderTextSummary(result)
  await writeFile(join(dir, 'summary.txt'), summary + '\n')
  out(summary)
  out(`wrote ${relative(process.cwd(), dir) || '.'}/result.json, report.html, summary.txt`)
  return result.ok ? 0 : 1
}

// run as a script (not when imported by `cocoon sim`)
if (process.argv[1] != null && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  simMain(process.argv.slice(2)).then(code => { process.exit(code) }, err => {
    process.stderr.write(`sim: ${(err as Error).stack ?? String(err)}\n`)
    process.exit(1)
  })
}

/**
 * Runs the `cocoon` command for tests: one-shot commands (`run`) and
 * long-running ones (`start`) whose output is collected; `killAll` ends the
 * long-running ones after the suite.
 */
import { execFile, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { readNodeFile } from '../src/ops/node-file.js'
import { cleanupTempDirs, tempDir, waitFor } from './helpers.js'
import type { ChildProcess } from 'node:child_process'
import type { NodeFile } from '../src/ops/node-file.js'
import type { AddressInfo } from 'node:net'

export const COCOON_BIN = fileURLToPath(new URL('../../bin/cocoon.js', import.meta.url))

export interface CliResult { code: number | null, stdout: string, stderr: string }

export interface Started {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

export class CliHarness {
  private readonly children: ChildProcess[] = []
  private readonly envOf: () => NodeJS.ProcessEnv

  /** `env` is read at each call, so a suite may set it up in before(). */
  constructor (env: () => NodeJS.ProcessEnv) {
    this.envOf = env
  }

  /** `extraEnv` overrides the suite's environment for this one command. */
  async run (args: string[], timeoutMs = 15_000, extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    return new Promise(resolve => {
      execFile(process.execPath, [COCOON_BIN, ...args], { env: { ...process.env, ...this.envOf(), ...extraEnv }, timeout: timeoutMs }, (err, stdout, stderr) => {
        resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout, stderr })
      })
    })
  }

  start (args: string[]): Started {
    const child = spawn(process.execPath, [COCOON_BIN, ...args], { env: { ...process.env, ...this.envOf() }, stdio: ['ignore', 'pipe', 'pipe'] })
    this.children.push(child)
    let output = ''
    child.stdout?.on('data', d => { output += String(d) })
    child.stderr?.on('data', d => { output += String(d) })
    const exited = new Promise<number | null>(resolve => { child.once('exit', code => { resolve(code) }) })
    return { child, output: () => output, exited }
  }

  killAll (): void {
    for (const child of this.children) if (child.exitCode == null) child.kill('SIGKILL')
  }
}

/**
 * A harness for one mocha suite: a fresh COCOON_HOME before it, every
 * started process killed and the temp dirs removed after it.
 */
export class CliSuite extends CliHarness {
  home = ''
  env: NodeJS.ProcessEnv = {}

  constructor () {
    super(() => this.env)
    before(async () => {
      this.home = await tempDir()
      this.env = { COCOON_HOME: this.home, DEBUG: '' }
    })
    after(async () => {
      this.killAll()
      await cleanupTempDirs()
    })
  }

  /** The node file a started node writes in `dataDir`, once it is up. */
  async nodeFile (dataDir: string, proc: Pick<Started, 'output'>, timeoutMs = 30_000): Promise<NodeFile> {
    let file: NodeFile | undefined
    await waitFor(async () => { file = await readNodeFile(dataDir); return file != null }, timeoutMs, `the node in ${dataDir} to start; its output:\n${proc.output()}`)
    return file as NodeFile
  }

  /** The client's API URL, once it sees a worker's model through a proxy. */
  async clientApi (dir: string, client: { output: () => string }, timeoutMs = 40_000): Promise<string> {
    let api = ''
    await waitFor(async () => {
      const st = await this.run(['status', '--data-dir', dir, '--json'], 60_000)
      api = (JSON.parse(st.stdout || '{}') as { roleStatus?: { api?: string } }).roleStatus?.api ?? ''
      if (api === '') return false
      const models = await fetch(`${api}/v1/models`).then(async r => r.ok ? await r.json() as { data: unknown[] } : { data: [] }, () => ({ data: [] }))
      return models.data.length > 0
    }, timeoutMs, `the client to see a worker's model; client output:\n${client.output()}`)
    return api
  }
}

/** A TCP port free on loopback now. */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as AddressInfo).port
  await new Promise<void>(resolve => server.close(() => { resolve() }))
  return port
}

/**
 * Runs the `cocoon` command for tests: one-shot commands (`run`) and
 * long-running ones (`start`) whose output is collected; `killAll` ends the
 * long-running ones after the suite.
 */
import { execFile, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ChildProcess } from 'node:child_process'

export const COCOON_BIN = fileURLToPath(new URL('../../bin/cocoon.js', import.meta.url))

export interface CliResult { code: number | null, stdout: string, stderr: string }

export interface Started {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

export class CliHarness {
  private readonly children: ChildProcess[] = []
  private readonly env: () => NodeJS.ProcessEnv

  /** `env` is read at each call, so a suite may set it up in before(). */
  constructor (env: () => NodeJS.ProcessEnv) {
    this.env = env
  }

  /** `extraEnv` overrides the suite's environment for this one command. */
  async run (args: string[], timeoutMs = 15_000, extraEnv: NodeJS.ProcessEnv = {}): Promise<CliResult> {
    return new Promise(resolve => {
      execFile(process.execPath, [COCOON_BIN, ...args], { env: { ...process.env, ...this.env(), ...extraEnv }, timeout: timeoutMs }, (err, stdout, stderr) => {
        resolve({ code: err == null ? 0 : (typeof err.code === 'number' ? err.code : null), stdout, stderr })
      })
    })
  }

  start (args: string[]): Started {
    const child = spawn(process.execPath, [COCOON_BIN, ...args], { env: { ...process.env, ...this.env() }, stdio: ['ignore', 'pipe', 'pipe'] })
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

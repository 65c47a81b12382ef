import '../src/polyfills.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { validate } from '../src/config/load.js'
import type { NodeConfig } from '../src/config/schema.js'
import type { RoleName } from '../src/roles/names.js'

/** A fresh temporary directory; `cleanup()` removes every one made. */
const made: string[] = []
export async function tempDir (prefix = 'cocoon-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  made.push(dir)
  return dir
}
export async function cleanupTempDirs (): Promise<void> {
  await Promise.all(made.splice(0).map(async d => rm(d, { recursive: true, force: true })))
}

/** A validated loopback config for an in-process test node. */
export function testConfig (role: RoleName, dataDir: string, bootstrap: string[] = [], overrides: Record<string, unknown> = {}): NodeConfig {
  return validate({
    role,
    network: 'local',
    dataDir,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    announce: [],
    bootstrap,
    useDefaultBootstrap: false,
    logLevel: 'silent',
    admin: { enabled: false, host: '127.0.0.1', port: 0 },
    dht: { addressFilter: 'all' },
    maxConnections: 300,
    ...overrides
  })
}

/** Polls `check` every 20 ms; fails with `what` after `timeoutMs`. Returns the elapsed ms. */
export async function waitFor (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now()
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  return performance.now() - start
}

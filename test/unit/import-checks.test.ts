/**
 * The checks `npm test` runs on the code itself: the client core bundles
 * for browsers without Node builtins, and imports point down the layers.
 * Each is run on the real tree and on a small tree that breaks it.
 */
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { cleanupTempDirs, tempDir } from '../helpers.js'

const scripts = fileURLToPath(new URL('../../../scripts/', import.meta.url))

async function run (script: string, args: string[] = []): Promise<{ code: number, output: string }> {
  return await new Promise(resolve => {
    execFile(process.execPath, [join(scripts, script), ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err == null ? 0 : typeof err.code === 'number' ? err.code : 1, output: stdout + stderr })
    })
  })
}

describe('code checks in npm test', function () {
  this.timeout(90_000)
  after(cleanupTempDirs)

  it('bundles the client core for browsers, and fails on a module that imports a Node builtin', async () => {
    const core = await run('check-browser.mjs')
    expect(core.code, core.output).to.equal(0)
    const dir = await tempDir()
    await writeFile(join(dir, 'entry.ts'), "import { helper } from './helper.js'\nexport const x = helper()\n")
    await writeFile(join(dir, 'helper.ts'), "import { createHash } from 'node:crypto'\nexport const helper = (): string => createHash('sha256').digest('hex')\n")
    const bad = await run('check-browser.mjs', [join(dir, 'entry.ts')])
    expect(bad.code).to.equal(1)
    expect(bad.output).to.match(/helper\.ts imports node:crypto/)
  })

  it('passes the real tree, and names an import that points up the layers', async () => {
    const real = await run('check-layers.mjs')
    expect(real.code, real.output).to.equal(0)
    const root = await tempDir()
    await mkdir(join(root, 'p2p'))
    await mkdir(join(root, 'roles'))
    await writeFile(join(root, 'roles', 'role.ts'), "import { core } from '../p2p/core.js'\nexport const role = core\n")
    await writeFile(join(root, 'p2p', 'core.ts'), "import type { Role } from '../roles/role.js'\nexport const core = 1\nexport type R = Role\n")
    const bad = await run('check-layers.mjs', [root])
    expect(bad.code).to.equal(1)
    expect(bad.output).to.match(/p2p\/core\.ts \(p2p\) imports roles\/role\.js \(roles\), a layer above it/)
    expect(bad.output, 'the downward import is fine').to.not.match(/roles\/role\.ts \(roles\) imports/)
  })
})

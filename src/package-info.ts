import { existsSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The directory holding this package's package.json (works from src/ and dist/). */
export function packageRoot (): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('cannot find package.json above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
  return dir
}

let cachedVersion: string | undefined

export function packageVersion (): string {
  if (cachedVersion == null) {
    const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string }
    cachedVersion = pkg.version
  }
  return cachedVersion
}

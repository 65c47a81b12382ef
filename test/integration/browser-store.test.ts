/**
 * The IndexedDB channel store in headless Chromium: a state the page
 * acknowledged (after flush) survives `kill -9` of the whole browser, a
 * reload finds it, and a second tab cannot open the same store while the
 * first holds it. The browser is Debian's chromium (scripts/install-chromium.sh),
 * started by the test so it can be killed; the page comes from a local
 * server on 127.0.0.1.
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createServer } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { build } from 'esbuild'
import { chromium } from 'playwright-core'
import type { ChildProcess } from 'node:child_process'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, Page } from 'playwright-core'
import type { StorePageApi } from '../browser/store-page.js'

const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const ENTRY = fileURLToPath(new URL('../../../test/browser/store-page.ts', import.meta.url))
const LAUNCH_TIMEOUT_MS = 40_000
const ACKS_BEFORE_KILL = 150n

interface Chromium {
  proc: ChildProcess
  browser: Browser
}

/** Starts Chromium in its own process group (so the test can kill all of it) and connects over CDP. */
async function launch (userDataDir: string): Promise<Chromium> {
  const proc = spawn(CHROMIUM_PATH, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
    `--user-data-dir=${userDataDir}`, 'about:blank'], { detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
  const endpoint = await new Promise<string>((resolve, reject) => {
    let seen = ''
    const timer = setTimeout(() => { reject(new Error(`chromium printed no DevTools endpoint within ${LAUNCH_TIMEOUT_MS} ms: ${seen.slice(-500)}`)) }, LAUNCH_TIMEOUT_MS)
    proc.stderr?.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      const m = /DevTools listening on (ws:\/\/\S+)/.exec(seen)
      if (m != null) { clearTimeout(timer); resolve(m[1]) }
    })
    proc.once('exit', code => { clearTimeout(timer); reject(new Error(`chromium exited (${code}) before it listened: ${seen.slice(-500)}`)) })
  })
  const browser = await chromium.connectOverCDP(endpoint, { timeout: LAUNCH_TIMEOUT_MS })
  return { proc, browser }
}

/** kill -9 of the browser and every process it started. */
async function killHard (c: Chromium): Promise<void> {
  const exited = once(c.proc, 'exit')
  process.kill(-(c.proc.pid as number), 'SIGKILL')
  await exited
}

async function openPage (c: Chromium, url: string): Promise<Page> {
  const page = await c.browser.contexts()[0].newPage()
  await page.goto(url)
  await page.waitForFunction(() => 'storeTest' in globalThis, undefined, { timeout: 15_000 })
  return page
}

const call = async <K extends keyof StorePageApi>(page: Page, name: K): Promise<Awaited<ReturnType<StorePageApi[K]>>> =>
  await page.evaluate(async (n) => {
    const api = (globalThis as unknown as { storeTest: Record<string, () => unknown> }).storeTest
    return await api[n]()
  }, name) as Awaited<ReturnType<StorePageApi[K]>>

describe('channel store in Chromium (IndexedDB)', function () {
  this.timeout(120_000)
  let server: Server
  let url: string
  let profile: string
  const running: Chromium[] = []

  before(async () => {
    if (!existsSync(CHROMIUM_PATH)) {
      throw new Error(`Chromium not found at ${CHROMIUM_PATH}: run scripts/install-chromium.sh (or set CHROMIUM_PATH to a Chromium binary)`)
    }
    const bundle = await build({ entryPoints: [ENTRY], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' })
    const js = bundle.outputFiles[0].contents
    server = createServer((req, res) => {
      if (req.url === '/store.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end(js)
      } else {
        res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>store</title><script type="module" src="/store.js"></script>')
      }
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    // the same origin (port included) across browser restarts, or IndexedDB would be another one
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`
    profile = await mkdtemp(join(tmpdir(), 'cocoon-chromium-'))
  })

  after(async () => {
    for (const c of running) await killHard(c).catch(() => {})
    server?.close()
    if (profile != null) await rm(profile, { recursive: true, force: true })
  })

  it('keeps every state it acknowledged through kill -9 of the browser, and refuses a second tab', async () => {
    const first = await launch(profile)
    running.push(first)
    const page = await openPage(first, url)
    let acked = 0n
    await page.exposeFunction('acked', (seqno: string) => { acked = BigInt(seqno) })
    expect(await call(page, 'open')).to.equal('opened')

    const other = await openPage(first, url)
    expect(await call(other, 'open'), 'the first tab holds the store').to.match(/^ChannelStoreError: .*another tab/)

    // writes run on until the kill; whatever was acknowledged must be there afterwards
    page.evaluate(async () => { await (globalThis as unknown as { storeTest: StorePageApi }).storeTest.writeForever() }).catch(() => {})
    const giveUpAt = Date.now() + 30_000
    while (acked < ACKS_BEFORE_KILL && Date.now() < giveUpAt) await new Promise(resolve => setTimeout(resolve, 20))
    expect(Number(acked), 'the page acknowledged states').to.be.at.least(Number(ACKS_BEFORE_KILL))
    await killHard(first)
    running.pop()
    const lastAcked = acked

    const second = await launch(profile)
    running.push(second)
    const reloaded = await openPage(second, url)
    expect(await call(reloaded, 'open'), 'the dead browser held the lock no longer').to.equal('opened')
    const latest = await call(reloaded, 'latest')
    expect(latest, 'a state survived').to.not.equal(null)
    expect(Number(latest?.seqno ?? '0'), `acknowledged ${lastAcked}`).to.be.at.least(Number(lastAcked))
    expect(BigInt(latest?.cumulative ?? '0')).to.equal(BigInt(latest?.seqno ?? '0') * 1000n)

    // closing the store lets another tab open it
    const tab = await openPage(second, url)
    expect(await call(tab, 'open')).to.match(/another tab/)
    await call(reloaded, 'close')
    expect(await call(tab, 'open')).to.equal('opened')
  })
})

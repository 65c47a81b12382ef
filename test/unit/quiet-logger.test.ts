import { createRequire } from 'node:module'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { DISABLED_LOGGER, quietPrefixLogger } from '../../src/p2p/quiet-logger.js'
import { plainLoopbackNode } from '../helpers.js'
import type { Libp2p } from '@libp2p/interface'

/** The CommonJS module object, which the `debug` package reads isatty from (an ES namespace is read-only). */
const tty = createRequire(import.meta.url)('node:tty') as { isatty: (fd: number) => boolean }
const ECHO = '/test/echo/1.0.0'

async function echoPair (logger: ReturnType<typeof quietPrefixLogger>): Promise<[Libp2p, Libp2p]> {
  const a = await createLibp2p({ ...plainLoopbackNode(), logger })
  const b = await createLibp2p({ ...plainLoopbackNode(), logger })
  await b.handle(ECHO, async stream => {
    for await (const chunk of stream) stream.send(chunk)
    await stream.close()
  })
  await a.dial(b.getMultiaddrs()[0])
  return [a, b]
}

async function openStreams (a: Libp2p, b: Libp2p, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const stream = await a.dialProtocol(b.peerId, ECHO)
    await stream.close()
  }
}

describe('the libp2p logger while debug logging is off', () => {
  it('gives every component one disabled logger whose scopes are itself, and the usual loggers once DEBUG is set', () => {
    const quiet = quietPrefixLogger('node-1', {})
    const log = quiet.forComponent('libp2p:yamux')
    expect(log).to.equal(DISABLED_LOGGER)
    expect(log.enabled).to.equal(false)
    expect(log.newScope('stream:1')).to.equal(DISABLED_LOGGER)
    expect(() => { log('a %s', 'message'); log.error('an error'); log.trace('a trace') }).not.to.throw()
    const debugging = quietPrefixLogger('node-1', { DEBUG: 'node-1:libp2p:*' }).forComponent('libp2p:yamux')
    expect(debugging).not.to.equal(DISABLED_LOGGER)
    expect(debugging.newScope('stream:1')).not.to.equal(DISABLED_LOGGER)
  })

  it('asks nothing of the terminal per stream (the library logger asks twice per stream and more)', async () => {
    const isatty = tty.isatty
    let calls = 0
    tty.isatty = (fd: number) => { calls++; return isatty(fd) }
    const measure = async (logger: ReturnType<typeof quietPrefixLogger>): Promise<number> => {
      const [a, b] = await echoPair(logger)
      try {
        calls = 0
        await openStreams(a, b, 20)
        return calls
      } finally {
        await a.stop()
        await b.stop()
      }
    }
    try {
      const quiet = await measure(quietPrefixLogger('quiet', {}))
      const library = await measure(quietPrefixLogger('library', { DEBUG: 'nothing-that-matches' }))
      expect(quiet).to.equal(0)
      // the baseline shows the measure can fail: the library's own loggers do ask
      expect(library).to.be.greaterThan(20)
    } finally {
      tty.isatty = isatty
    }
  })
})

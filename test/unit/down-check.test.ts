import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'chai'
import { createLibp2p } from 'libp2p'
import { DownCheck } from '../../src/roles/proxy/down-check.js'
import { plainLoopbackNode } from '../helpers.js'
import type { DownCheckInit } from '../../src/roles/proxy/down-check.js'
import type { PeerId } from '@libp2p/interface'

const log = defaultLogger().forComponent('test:down-check')

async function worker (): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

function check (dial: DownCheckInit['dial'], listed = true): { downCheck: DownCheck, down: string[], dials: () => number } {
  const down: string[] = []
  let dials = 0
  const downCheck = new DownCheck({
    dial: async (peer, options) => { dials++; return dial(peer, options) },
    listedUp: () => listed,
    markDown: id => { down.push(id) },
    log,
    timeoutMs: 100
  })
  return { downCheck, down, dials: () => dials }
}

describe('proxy down check', () => {
  it('keeps a worker listed when the dial back only times out', async () => {
    const peer = await worker()
    // a dial that hangs (a loaded proxy or a slow network) until its deadline
    const { downCheck, down } = check(async (_, { signal }) => new Promise((_resolve, reject) => {
      signal.addEventListener('abort', () => { reject(new Error('dial aborted')) }, { once: true })
    }))
    downCheck.heardDirect(peer.toString())
    expect(await downCheck.check(peer)).to.equal('timed-out')
    expect(down).to.deep.equal([])
  })

  it('marks a worker down when the dial back is refused, over real TCP', async () => {
    const node = await createLibp2p(plainLoopbackNode())
    const gone = await createLibp2p(plainLoopbackNode())
    const addr = gone.getMultiaddrs()[0]
    await gone.stop()
    try {
      await node.peerStore.merge(gone.peerId, { multiaddrs: [multiaddr(addr.toString().replace(/\/p2p\/.*$/, ''))] })
      const down: string[] = []
      const downCheck = new DownCheck({
        dial: async (peer, options) => node.dial(peer, options),
        listedUp: () => true,
        markDown: id => { down.push(id) },
        log,
        timeoutMs: 3_000
      })
      downCheck.heardDirect(gone.peerId.toString())
      expect(await downCheck.check(gone.peerId)).to.equal('refused')
      expect(down).to.deep.equal([gone.peerId.toString()])
    } finally {
      await node.stop()
    }
  })

  it('dials a worker once however many of its connections close together, and skips workers not listed up', async () => {
    const peer = await worker()
    let answer: () => void = () => {}
    const { downCheck, down, dials } = check(async () => new Promise<void>(resolve => { answer = resolve }))
    downCheck.heardDirect(peer.toString())
    const first = downCheck.check(peer)
    expect(await downCheck.check(peer)).to.equal('skipped')
    answer()
    expect(await first).to.equal('reachable')
    expect(dials()).to.equal(1)
    expect(down).to.deep.equal([])
    const unlisted = check(async () => {}, false)
    unlisted.downCheck.heardDirect(peer.toString())
    expect(await unlisted.downCheck.check(peer)).to.equal('skipped')
    expect(unlisted.dials()).to.equal(0)
  })

  it('dials back only a worker whose announcements come straight from it (its link), and forgets unlisted ones as the set grows', async () => {
    const linked = await worker()
    const other = await worker()
    const listed = new Set([linked.toString(), other.toString()])
    let dials = 0
    const downCheck = new DownCheck({
      dial: async () => { dials++ },
      listedUp: id => listed.has(id),
      markDown: () => {},
      log,
      timeoutMs: 100
    })
    downCheck.heardDirect(linked.toString())
    // the other worker's idle DHT connection closing says nothing about it: no dial
    expect(await downCheck.check(other)).to.equal('skipped')
    expect(await downCheck.check(linked)).to.equal('reachable')
    expect(dials).to.equal(1)
    // a flood of identities that never got listed is pruned, the listed link kept
    for (let i = 0; i < 2_000; i++) downCheck.heardDirect(`unlisted-${i}`)
    expect(downCheck.directCount).to.be.at.most(1_024)
    expect(await downCheck.check(linked)).to.equal('reachable')
    expect(dials).to.equal(2)
  })
})

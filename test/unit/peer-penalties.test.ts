import { peerIdFromString } from '@libp2p/peer-id'
import { expect } from 'chai'
import { GRAYLIST_BAN_MS, GraylistGuard, IGNORED_BURST, IGNORED_PER_S, IgnoredRate, PeerBans } from '../../src/p2p/peer-penalties.js'
import { TopicValidatorResult } from '../../src/p2p/gossip.js'
import { noLog } from '../helpers.js'
import type { Message } from '@libp2p/gossipsub'

const A = '12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
const B = '12D3KooWGRUVh7YF1sXY3U3eA1x4E4Jmr8WKbmY3x7FLRzBWHzPC'

describe('peer penalties', () => {
  it('allows each peer a burst of ignored messages and a steady trickle, and counts the rest', () => {
    let now = 0
    const rate = new IgnoredRate(() => now)
    for (let i = 0; i < IGNORED_BURST; i++) expect(rate.over(A), `message ${i}`).to.equal(false)
    expect(rate.over(A)).to.equal(true)
    expect(rate.over(B), 'another peer has its own allowance').to.equal(false)
    now += 1000
    for (let i = 0; i < IGNORED_PER_S; i++) expect(rate.over(A)).to.equal(false)
    expect(rate.over(A)).to.equal(true)
  })

  it('turns ignored messages their author sent itself into rejections past the allowance, never those a relay forwarded', async () => {
    const rate = new IgnoredRate(() => 0)
    const validate = rate.guard(() => TopicValidatorResult.Ignore)
    const author = peerIdFromString(A)
    const relay = peerIdFromString(B)
    const message = { type: 'signed', from: author } as unknown as Message
    const verdicts: TopicValidatorResult[] = []
    for (let i = 0; i <= IGNORED_BURST; i++) verdicts.push(await validate(author, message))
    expect(verdicts.slice(0, IGNORED_BURST).every(v => v === TopicValidatorResult.Ignore)).to.equal(true)
    expect(verdicts[IGNORED_BURST]).to.equal(TopicValidatorResult.Reject)
    for (let i = 0; i <= IGNORED_BURST; i++) expect(await validate(relay, message), 'relayed').to.equal(TopicValidatorResult.Ignore)
  })

  it('keeps a banned peer out until its ban ends', () => {
    let now = 0
    const bans = new PeerBans(() => now)
    bans.ban(A, 1_000)
    expect(bans.has(A)).to.equal(true)
    expect(bans.has(B)).to.equal(false)
    now = 1_001
    expect(bans.has(A)).to.equal(false)
    expect(bans.size).to.equal(0)
  })

  it('disconnects and bans peers under the graylist threshold, sparing the ones it must keep', async () => {
    let now = 0
    const bans = new PeerBans(() => now)
    const hungUp: string[] = []
    const scores: Record<string, number> = { [A]: -100, [B]: -100 }
    const guard = new GraylistGuard({
      score: peer => scores[peer] ?? 0,
      threshold: -80,
      peers: () => [peerIdFromString(A), peerIdFromString(B)],
      hangUp: async peer => { hungUp.push(peer.toString()) },
      bans,
      spare: peer => peer === B,
      log: noLog
    })
    await guard.check()
    expect(hungUp).to.deep.equal([A])
    expect(bans.has(A)).to.equal(true)
    await guard.check()
    expect(hungUp, 'once').to.deep.equal([A])
    now += GRAYLIST_BAN_MS + 1
    expect(bans.has(A)).to.equal(false)
  })
})

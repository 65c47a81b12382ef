/**
 * What gossip abuse costs the sender.
 *
 * Gossipsub penalises messages a validator rejects, but not those it
 * ignores (another network's, an attestation that cannot be reached): an
 * honest peer causes those now and then, a flood of them is an attack that
 * costs every receiver a validation. `IgnoredRate.guard` wraps a topic
 * validator: it allows each author a few ignored messages a second and turns
 * the rest into rejections, which lower the sender's score. Only messages
 * their author delivered itself count: ignored messages are never forwarded
 * by our nodes, and a relay that accepted what this node cannot check (an
 * attestation it could reach and we cannot) must not pay for it.
 *
 * A peer whose score falls under the graylist threshold is ignored by
 * gossipsub but stays connected. `GraylistGuard` disconnects it and keeps it
 * out (`PeerBans`, asked by the connection gater) for a while.
 */
import { TopicValidatorResult } from './gossip.js'
import type { Message } from '@libp2p/gossipsub'
import type { Logger, PeerId } from '@libp2p/interface'

/** Ignored messages a peer may send per second, on average... */
export const IGNORED_PER_S = 5
/** ...and in a burst. */
export const IGNORED_BURST = 50
/** How long a graylisted peer is kept out. */
export const GRAYLIST_BAN_MS = 10 * 60_000
/** How often scores are checked against the graylist threshold. */
const GRAYLIST_CHECK_MS = 2_000
/** Peers tracked at most (the least recently seen are forgotten first). */
const MAX_TRACKED = 10_000

/** A token bucket of ignored messages per peer. */
export class IgnoredRate {
  private readonly buckets = new Map<string, { tokens: number, atMs: number }>()
  private readonly now: () => number

  constructor (now: () => number = () => performance.now()) {
    this.now = now
  }

  /** `validate`, with the ignored messages an author sends past its allowance rejected instead. */
  guard (validate: (from: PeerId, message: Message) => TopicValidatorResult | Promise<TopicValidatorResult>): (from: PeerId, message: Message) => Promise<TopicValidatorResult> {
    return async (from, message) => {
      const result = await validate(from, message)
      const authored = message.type === 'signed' && from.equals(message.from)
      return result === TopicValidatorResult.Ignore && authored && this.over(from.toString()) ? TopicValidatorResult.Reject : result
    }
  }

  /** Counts an ignored message from `peer`; true when it is over its allowance (reject it instead). */
  over (peer: string): boolean {
    const nowMs = this.now()
    let b = this.buckets.get(peer)
    if (b == null) {
      if (this.buckets.size >= MAX_TRACKED) this.buckets.delete(this.buckets.keys().next().value as string)
      b = { tokens: IGNORED_BURST, atMs: nowMs }
    } else {
      this.buckets.delete(peer)
      b.tokens = Math.min(IGNORED_BURST, b.tokens + (nowMs - b.atMs) / 1000 * IGNORED_PER_S)
      b.atMs = nowMs
    }
    this.buckets.set(peer, b)
    if (b.tokens < 1) return true
    b.tokens -= 1
    return false
  }
}

/** Peers kept out until a time; the connection gater asks `has`. */
export class PeerBans {
  private readonly until = new Map<string, number>()
  private readonly now: () => number

  constructor (now: () => number = Date.now) {
    this.now = now
  }

  ban (peer: string, forMs: number): void {
    if (this.until.size >= MAX_TRACKED) this.until.delete(this.until.keys().next().value as string)
    this.until.set(peer, this.now() + forMs)
  }

  has (peer: string): boolean {
    const until = this.until.get(peer)
    if (until == null) return false
    if (until > this.now()) return true
    this.until.delete(peer)
    return false
  }

  get size (): number {
    return this.until.size
  }
}

export interface GraylistGuardInit {
  /** The peer's gossip score now. */
  score: (peer: string) => number
  threshold: number
  peers: () => PeerId[]
  /** Closes every connection to the peer. */
  hangUp: (peer: PeerId) => Promise<void>
  bans: PeerBans
  /** Never banned (bootstrap peers, which every node needs). */
  spare?: (peer: string) => boolean
  log: Logger
}

export class GraylistGuard {
  private readonly init: GraylistGuardInit
  private timer?: ReturnType<typeof setInterval>
  /** Peers disconnected so far. */
  banned = 0

  constructor (init: GraylistGuardInit) {
    this.init = init
  }

  start (): void {
    this.timer = setInterval(() => { void this.check() }, GRAYLIST_CHECK_MS)
    this.timer.unref?.()
  }

  stop (): void {
    clearInterval(this.timer)
  }

  async check (): Promise<void> {
    for (const peer of this.init.peers()) {
      const id = peer.toString()
      if (this.init.spare?.(id) === true || this.init.bans.has(id)) continue
      const score = this.init.score(id)
      if (score >= this.init.threshold) continue
      this.init.bans.ban(id, GRAYLIST_BAN_MS)
      this.banned++
      this.init.log('peer %s scores %d, under the graylist threshold %d: disconnected and kept out for %d min', id, Math.round(score), this.init.threshold, GRAYLIST_BAN_MS / 60_000)
      await this.init.hangUp(peer).catch(() => {})
    }
  }
}

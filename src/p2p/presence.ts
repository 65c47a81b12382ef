/**
 * Presence: the nodes others must find (bootstrap nodes and proxies, see
 * PRESENCE_PUBLISHER_ROLES) publish a small signed heartbeat (role, network,
 * version, addresses; a proxy adds how many workers it lists) on
 * `cocoon/1/presence` at start, on address changes and every interval; every
 * node listens. Workers and clients send none: with every node heartbeating,
 * each join cost a signature check at every node, and a 300-node swarm spent
 * more time forming than serving. The interval grows with the number of
 * publishers this node knows, so the presence every node receives stays
 * bounded as the swarm grows; each heartbeat states its interval, and
 * receivers expire a peer after three of its own intervals. The topic validator checks each one before it is
 * forwarded: forgers are rejected (and lose gossip score), stale or replayed
 * messages are ignored (honest-but-late must not be punished).
 */
import { multiaddr } from '@multiformats/multiaddr'
import {
  P2P_MULTIADDR_CODE, PRESENCE_INTERVAL_MS, PRESENCE_MAX_ADDRS, PRESENCE_MAX_INTERVAL_MS, PRESENCE_NEWCOMER_MIN_GAP_MS, PRESENCE_NEWCOMER_PER_PEER_MS,
  PRESENCE_COALESCE_MS, PRESENCE_MAX_BYTES, PRESENCE_MAX_CLOCK_SKEW_MS, PRESENCE_FIRST_MAX_DELAY_MS, PRESENCE_PER_PEER_MS, PRESENCE_REACHED_PEERS, PRESENCE_TOPIC
} from './constants.js'
import { TopicValidatorResult } from './gossip.js'
import { IgnoredRate } from './peer-penalties.js'
import { Presence, Role } from '../gen/node.pb.js'
import type { GossipSub } from './gossip.js'
import type { NodeMetrics } from './metrics.js'
import type { PeerDirectory } from './peer-directory.js'
import type { Message } from '@libp2p/gossipsub'
import type { Logger, PeerId } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'

export interface PresenceHost {
  peerId: PeerId
  getMultiaddrs(): Multiaddr[]
  services: { pubsub: GossipSub }
  addEventListener(type: 'self:peer:update', listener: () => void): void
  removeEventListener(type: 'self:peer:update', listener: () => void): void
}

export interface PresenceInit {
  role: Role
  network: string
  version: string
  intervalMs?: number
  /** Send heartbeats (default true); false: only listen (announce() still sends one when asked). */
  heartbeat?: boolean
  /**
   * Subscribe to presence and record what arrives (default true). false: the
   * node takes no presence gossip at all (workers: the proxies they need come
   * from the DHT and /cocoon/info); announce() still publishes through
   * gossipsub's fanout.
   */
  listen?: boolean
  /** A proxy's count of the workers it lists, stated in each heartbeat. */
  workers?: () => number
  /** Minimum gap between heartbeats sent for newcomers (default PRESENCE_NEWCOMER_MIN_GAP_MS). */
  newcomerMinGapMs?: number
  /** Longest wait for peers before the first heartbeat (default PRESENCE_FIRST_MAX_DELAY_MS). */
  firstMaxDelayMs?: number
  now?: () => number
  log: Logger
  metrics?: NodeMetrics
}

/** Gossipsub's publish takes per-message options its exported interface does not list. */
interface PublishWithOptions {
  publish(topic: string, data: Uint8Array, opts?: { floodPublish?: boolean }): ReturnType<GossipSub['publish']>
}

/** Why a presence message was not accepted; label values for metrics. */
export type PresenceVerdict =
  | { result: TopicValidatorResult.Accept, presence: Presence }
  | { result: TopicValidatorResult.Ignore | TopicValidatorResult.Reject, reason: string }

export class PresenceService {
  private readonly host: PresenceHost
  private readonly directory: PeerDirectory
  private readonly init: PresenceInit
  private readonly now: () => number
  /** Ignored presence past a small allowance counts against its author. */
  private readonly ignored = new IgnoredRate()
  private timer?: ReturnType<typeof setTimeout>
  private running = false
  private lastSeq = 0n
  // self:peer:update also fires for protocol changes (a service registering
  // a handler after start); presence carries addresses only, and a heartbeat
  // costs a signature check at every node, so only new addresses are news
  private readonly onAddressChange = (): void => {
    if (this.init.heartbeat === false) return
    // before the first heartbeat, the pending one will carry them
    if (this.lastRecipients < 0) return
    if (this.addrsKey(this.currentAddrs()) !== this.lastAddrsKey) this.announceSoon()
  }
  private lastAddrsKey?: string
  private lastAnnounceMs = 0
  /** Peers the last heartbeat was sent to (-1 before the first). */
  private lastRecipients = -1
  // A node's first heartbeats may reach few peers or none (it is still
  // connecting), and the swarm would not hear of it for a whole interval.
  // While the last one reached fewer than PRESENCE_REACHED_PEERS, each peer
  // that subscribes brings another, at most once per the newcomer gap so
  // churn cannot turn presence into a flood: inside the gap the heartbeat is
  // deferred to the gap's end (one for every newcomer meanwhile), not
  // dropped. A node already heard through the mesh does not re-announce for
  // newcomers: those it is connected to learn it through /cocoon/info, the
  // others at its next heartbeat (re-announcing to the whole swarm for each
  // newcomer made every join cost a message at every node from every peer).
  //
  // The first heartbeat waits (up to PRESENCE_FIRST_MAX_DELAY_MS) until
  // PRESENCE_REACHED_PEERS peers that take presence are connected: sent at
  // once it reached the bootstrap node alone, and a second one followed for
  // the next subscriber; each costs a signature check at every node.
  private readonly onSubscriptionChange = (evt: CustomEvent<{ subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
    if (this.init.heartbeat === false || !evt.detail.subscriptions.some(s => s.topic === PRESENCE_TOPIC && s.subscribe)) return
    if (this.lastRecipients < 0) {
      const pubsub = this.host.services.pubsub as Partial<Pick<GossipSub, 'getSubscribers'>>
      if ((pubsub.getSubscribers?.(PRESENCE_TOPIC).length ?? 0) >= PRESENCE_REACHED_PEERS) this.announceSoon()
      return
    }
    if (this.lastRecipients >= PRESENCE_REACHED_PEERS) return
    this.announceIn(Math.max(PRESENCE_COALESCE_MS, this.lastAnnounceMs + this.newcomerGapMs() - this.now()))
  }
  private pending?: ReturnType<typeof setTimeout>
  private pendingAtMs = 0

  constructor (host: PresenceHost, directory: PeerDirectory, init: PresenceInit) {
    this.host = host
    this.directory = directory
    this.init = init
    this.now = init.now ?? Date.now
  }

  start (): void {
    const pubsub = this.host.services.pubsub
    if (this.init.listen !== false) {
      pubsub.topicValidators.set(PRESENCE_TOPIC, this.ignored.guard((_from, message) => this.validateAndRecord(message)))
      pubsub.subscribe(PRESENCE_TOPIC)
    }
    this.host.addEventListener('self:peer:update', this.onAddressChange)
    pubsub.addEventListener('subscription-change', this.onSubscriptionChange)
    this.running = true
    if (this.init.heartbeat === false) return
    this.scheduleHeartbeat()
    this.announceIn(this.init.firstMaxDelayMs ?? PRESENCE_FIRST_MAX_DELAY_MS)
  }

  /**
   * The heartbeat interval now: the configured one, or longer in a large
   * swarm (PRESENCE_PER_PEER_MS per known publisher), so that P publishers
   * each heartbeating reach every node at a bounded total rate.
   */
  intervalMs (): number {
    const base = this.init.intervalMs ?? PRESENCE_INTERVAL_MS
    return Math.min(PRESENCE_MAX_INTERVAL_MS, Math.max(base, this.directory.publishers() * PRESENCE_PER_PEER_MS))
  }

  /** The least time between heartbeats sent for newcomers; grows with the publishers for the same reason. */
  newcomerGapMs (): number {
    return Math.max(this.init.newcomerMinGapMs ?? PRESENCE_NEWCOMER_MIN_GAP_MS, this.directory.publishers() * PRESENCE_NEWCOMER_PER_PEER_MS)
  }

  // re-armed after each heartbeat with the interval of the moment, jittered
  // by up to 10% so nodes started together do not heartbeat together
  private scheduleHeartbeat (): void {
    if (!this.running) return
    const interval = this.intervalMs()
    this.timer = setTimeout(() => {
      void this.announce().finally(() => { this.scheduleHeartbeat() })
    }, Math.round(interval * (0.9 + 0.1 * Math.random())))
    this.timer.unref?.()
  }

  stop (): void {
    this.running = false
    clearTimeout(this.timer)
    clearTimeout(this.pending)
    this.pending = undefined
    this.host.removeEventListener('self:peer:update', this.onAddressChange)
    const pubsub = this.host.services.pubsub
    pubsub.removeEventListener('subscription-change', this.onSubscriptionChange)
    if (this.init.listen === false) return
    pubsub.topicValidators.delete(PRESENCE_TOPIC)
    pubsub.unsubscribe(PRESENCE_TOPIC)
  }

  /** The sequence number of the last heartbeat this node sent (0 before the first). */
  get lastSentSeq (): bigint {
    return this.lastSeq
  }

  private currentAddrs (): Array<Uint8Array<ArrayBuffer>> {
    return this.host.getMultiaddrs().slice(0, PRESENCE_MAX_ADDRS).map(ma => ma.decapsulateCode(P2P_MULTIADDR_CODE).bytes)
  }

  private addrsKey (addrs: Uint8Array[]): string {
    return addrs.map(a => Buffer.from(a).toString('hex')).join(',')
  }

  /** Publishes a heartbeat now. Returns how many peers it was sent to. */
  async announce (): Promise<number> {
    // Unix-time based, so it keeps increasing across restarts without storage.
    this.lastAnnounceMs = this.now()
    const seq = BigInt(this.now()) * 1000n
    this.lastSeq = seq > this.lastSeq ? seq : this.lastSeq + 1n
    const message: Presence = {
      peerId: this.host.peerId.toMultihash().bytes,
      role: this.init.role,
      network: this.init.network,
      version: this.init.version,
      addrs: this.currentAddrs(),
      timestampMs: BigInt(this.now()),
      seq: this.lastSeq,
      intervalMs: this.intervalMs(),
      workers: this.init.workers?.() ?? 0
    }
    this.lastAddrsKey = this.addrsKey(message.addrs)
    try {
      // to the mesh, not to every subscriber: each mesh peer forwards it to
      // its own mesh, so flooding (gossipsub's default) only sent a
      // well-connected node's heartbeat to a hundred peers that would each
      // have received it anyway
      const pubsub = this.host.services.pubsub as GossipSub & PublishWithOptions
      const result = await pubsub.publish(PRESENCE_TOPIC, Presence.encode(message), { floodPublish: false })
      this.lastRecipients = result.recipients.length
      return result.recipients.length
    } catch (err) {
      this.init.log.error('presence publish failed - %e', err)
      return 0
    }
  }

  private announceSoon (): void {
    this.announceIn(PRESENCE_COALESCE_MS)
  }

  /**
   * Schedules one heartbeat `delayMs` from now unless one is already due
   * sooner, so a burst of triggers (address changes at start-up, several
   * newcomers) sends a single message.
   */
  private announceIn (delayMs: number): void {
    const at = this.now() + delayMs
    if (this.pending != null && this.pendingAtMs <= at) return
    clearTimeout(this.pending)
    this.pendingAtMs = at
    this.pending = setTimeout(() => {
      this.pending = undefined
      void this.announce()
    }, delayMs)
    this.pending.unref?.()
  }

  /** The topic validator: decides, counts, and records accepted presence. */
  validateAndRecord (message: Message): TopicValidatorResult {
    const verdict = this.validate(message)
    const reason = verdict.result === TopicValidatorResult.Accept ? 'ok' : verdict.reason
    this.init.metrics?.gossipValidation.inc({ topic: PRESENCE_TOPIC, result: verdict.result, reason })
    if (verdict.result === TopicValidatorResult.Accept) {
      const p = verdict.presence
      if (message.type === 'signed') {
        this.directory.upsert({
          peerId: message.from.toString(),
          role: p.role,
          network: p.network,
          version: p.version,
          addrs: p.addrs.map(bytes => multiaddr(bytes).toString()),
          seq: p.seq,
          intervalMs: p.intervalMs === 0 ? PRESENCE_INTERVAL_MS : p.intervalMs,
          ...(p.role === Role.PROXY ? { workers: p.workers } : {}),
          source: 'presence'
        })
      }
    } else {
      this.init.log('presence %s: %s', verdict.result, reason)
    }
    return verdict.result
  }

  validate (message: Message): PresenceVerdict {
    const reject = (reason: string): PresenceVerdict => ({ result: TopicValidatorResult.Reject, reason })
    const ignore = (reason: string): PresenceVerdict => ({ result: TopicValidatorResult.Ignore, reason })
    if (message.type !== 'signed') return reject('unsigned')
    if (message.data.byteLength > PRESENCE_MAX_BYTES) return reject('too_large')
    let presence: Presence
    try {
      presence = Presence.decode(message.data, { limits: { addrs: PRESENCE_MAX_ADDRS } })
    } catch {
      return reject('malformed')
    }
    if (!bytesEqual(presence.peerId, message.from.toMultihash().bytes)) return reject('signer_mismatch')
    if (presence.role === Role.ROLE_UNSPECIFIED || !Object.values(Role).includes(presence.role)) return reject('bad_role')
    // 0: a sender from before intervals were stated (taken as the default)
    if (presence.intervalMs > PRESENCE_MAX_INTERVAL_MS) return reject('bad_interval')
    for (const bytes of presence.addrs) {
      try {
        multiaddr(bytes)
      } catch {
        return reject('bad_addr')
      }
    }
    // From here on the message is well-formed and really from its sender;
    // anything else is at worst late or from another network: ignore.
    if (presence.network !== this.init.network) return ignore('other_network')
    const skew = Number(presence.timestampMs) - this.now()
    if (Math.abs(skew) > PRESENCE_MAX_CLOCK_SKEW_MS) return ignore('stale')
    if (presence.seq <= this.directory.lastSeq(message.from.toString())) return ignore('replayed')
    return { result: TopicValidatorResult.Accept, presence }
  }
}

function bytesEqual (a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false
  for (let i = 0; i < a.byteLength; i++) {
    if (a[i] !== b[i]) return false
  }
  return true
}

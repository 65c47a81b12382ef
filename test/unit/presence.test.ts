import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { expect } from 'chai'
import { validatePeerScoreParams, validatePeerScoreThresholds, createPeerScoreThresholds } from '@libp2p/gossipsub/score'
import { PRESENCE_INTERVAL_MS, PRESENCE_MAX_INTERVAL_MS, PRESENCE_PER_PEER_MS, PRESENCE_REACHED_PEERS, PRESENCE_TOPIC } from '../../src/p2p/constants.js'
import { SCORE_THRESHOLDS, TOPIC_PROFILES, TopicValidatorResult, peerScoreParams } from '../../src/p2p/gossip.js'
import { PeerDirectory } from '../../src/p2p/peer-directory.js'
import { PresenceService } from '../../src/p2p/presence.js'
import type { PresenceHost } from '../../src/p2p/presence.js'
import { Presence, Role } from '../../src/gen/node.pb.js'
import type { Message } from '@libp2p/gossipsub'
import type { Logger, PeerId } from '@libp2p/interface'

const noLog = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as unknown as Logger

describe('presence validation', () => {
  let alice: PeerId
  let mallory: PeerId
  let now: number
  let directory: PeerDirectory
  let service: PresenceService

  before(async () => {
    alice = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    mallory = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  })

  beforeEach(() => {
    now = 1_800_000_000_000
    directory = new PeerDirectory({ now: () => now })
    service = new PresenceService({} as never, directory, { role: Role.PROXY, network: 'local', version: '1', log: noLog, now: () => now })
  })

  function presence (over: Partial<Presence> = {}): Presence {
    return {
      peerId: alice.toMultihash().bytes,
      role: Role.WORKER,
      network: 'local',
      version: '0.1.0',
      addrs: [multiaddr('/ip4/127.0.0.1/tcp/4000').bytes],
      timestampMs: BigInt(now),
      seq: BigInt(now) * 1000n,
      intervalMs: 30_000,
      workers: 0,
      ...over
    }
  }

  function signed (from: PeerId, data: Uint8Array): Message {
    return { type: 'signed', from, topic: PRESENCE_TOPIC, data, sequenceNumber: 1n, signature: new Uint8Array(64), key: from.publicKey! }
  }

  it('accepts a well-formed heartbeat from its own peer and records it', () => {
    expect(service.validateAndRecord(signed(alice, Presence.encode(presence())))).to.equal(TopicValidatorResult.Accept)
    const record = directory.get(alice.toString())
    expect(record?.role).to.equal(Role.WORKER)
    expect(record?.addrs).to.deep.equal(['/ip4/127.0.0.1/tcp/4000'])
  })

  it('rejects forgeries: another peer\'s id, garbage, oversized, bad role, bad address, unsigned', () => {
    const cases: Array<[Message, string]> = [
      [signed(mallory, Presence.encode(presence())), 'signer_mismatch'],
      [signed(alice, Uint8Array.from([0x0a, 0xff])), 'malformed'],
      [signed(alice, new Uint8Array(4096)), 'too_large'],
      [signed(alice, Presence.encode(presence({ role: Role.ROLE_UNSPECIFIED }))), 'bad_role'],
      [signed(alice, Presence.encode(presence({ addrs: [Uint8Array.from([0xff, 0xff, 0xff])] }))), 'bad_addr'],
      [{ type: 'unsigned', topic: PRESENCE_TOPIC, data: Presence.encode(presence()) }, 'unsigned']
    ]
    for (const [message, reason] of cases) {
      expect(service.validate(message), reason).to.deep.equal({ result: TopicValidatorResult.Reject, reason })
    }
    expect(directory.size).to.equal(0)
  })

  it('ignores, without punishing, stale, replayed and other-network heartbeats', () => {
    expect(service.validateAndRecord(signed(alice, Presence.encode(presence())))).to.equal(TopicValidatorResult.Accept)
    const replay = service.validate(signed(alice, Presence.encode(presence())))
    expect(replay).to.deep.equal({ result: TopicValidatorResult.Ignore, reason: 'replayed' })
    const stale = service.validate(signed(alice, Presence.encode(presence({ timestampMs: BigInt(now - 120_000), seq: BigInt(now) * 2000n }))))
    expect(stale).to.deep.equal({ result: TopicValidatorResult.Ignore, reason: 'stale' })
    const other = service.validate(signed(alice, Presence.encode(presence({ network: 'public', seq: BigInt(now) * 2000n }))))
    expect(other).to.deep.equal({ result: TopicValidatorResult.Ignore, reason: 'other_network' })
    now += 30_000
    expect(service.validate(signed(alice, Presence.encode(presence())))).to.have.property('result', TopicValidatorResult.Accept)
  })

  it('expires peers that stop announcing unless they stay connected', () => {
    service.validateAndRecord(signed(alice, Presence.encode(presence())))
    now += 10 * 60_000
    expect(directory.expire(id => id === alice.toString())).to.deep.equal([])
    expect(directory.expire()).to.deep.equal([alice.toString()])
  })
})

describe('gossip scoring parameters', () => {
  it('are valid for gossipsub on loopback and on the internet', () => {
    expect(() => { validatePeerScoreParams(peerScoreParams({ colocationWhitelist: ['127.0.0.1'] }) as never) }).to.not.throw()
    expect(() => { validatePeerScoreParams(peerScoreParams({ colocationWhitelist: [] }) as never) }).to.not.throw()
    expect(() => { validatePeerScoreThresholds(createPeerScoreThresholds(SCORE_THRESHOLDS)) }).to.not.throw()
  })

  it('take a peer below the graylist threshold after two rejected messages per topic, not one', () => {
    const params = peerScoreParams({ colocationWhitelist: [] })
    for (const topic of Object.keys(TOPIC_PROFILES)) {
      const t = params.topics![topic]
      const score = (invalid: number): number => t.topicWeight * t.invalidMessageDeliveriesWeight * invalid * invalid
      expect(score(1), topic).to.be.above(SCORE_THRESHOLDS.graylistThreshold)
      expect(score(1), topic).to.be.below(SCORE_THRESHOLDS.gossipThreshold)
      expect(score(2), topic).to.be.below(SCORE_THRESHOLDS.graylistThreshold)
      // time in mesh counts seconds, so an hour in the mesh cannot hide forgeries
      expect(t.timeInMeshQuantum).to.equal(1_000)
    }
  })
})

describe('presence heartbeat scheduling', () => {
  /** A host whose gossipsub only records what is published and lets the test fire subscription events. */
  async function fakeHost (recipients = 0): Promise<{ host: PresenceHost, published: number[], newcomer: () => void }> {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const published: number[] = []
    const pubsub = Object.assign(new EventTarget(), {
      topicValidators: new Map(),
      subscribe: () => {},
      unsubscribe: () => {},
      publish: async () => { published.push(Date.now()); return { recipients: Array.from({ length: recipients }, () => peerId) } }
    })
    const host = {
      peerId,
      getMultiaddrs: () => [],
      services: { pubsub },
      addEventListener: () => {},
      removeEventListener: () => {}
    } as unknown as PresenceHost
    const newcomer = (): void => {
      pubsub.dispatchEvent(new CustomEvent('subscription-change', { detail: { peerId, subscriptions: [{ topic: PRESENCE_TOPIC, subscribe: true }] } }))
    }
    return { host, published, newcomer }
  }

  const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

  it('sends its first heartbeat once three peers take presence, or after the longest wait', async () => {
    const { host, published, newcomer } = await fakeHost(PRESENCE_REACHED_PEERS)
    let subscribers = 0
    Object.assign(host.services.pubsub, { getSubscribers: () => Array.from({ length: subscribers }, () => host.peerId) })
    const service = new PresenceService(host, new PeerDirectory(), { role: Role.WORKER, network: 'local', version: '1', log: noLog, firstMaxDelayMs: 1_000 })
    service.start()
    try {
      subscribers = 1
      newcomer()
      await sleep(300)
      expect(published, 'one peer: wait for more').to.have.length(0)
      subscribers = PRESENCE_REACHED_PEERS
      newcomer()
      await sleep(300)
      expect(published).to.have.length(1)
      await sleep(900)
      expect(published, 'the fallback does not send a second one').to.have.length(1)
    } finally {
      service.stop()
    }
    // nobody shows up: it goes out after the longest wait anyway
    const lonely = await fakeHost()
    const alone = new PresenceService(lonely.host, new PeerDirectory(), { role: Role.WORKER, network: 'local', version: '1', log: noLog, firstMaxDelayMs: 300 })
    alone.start()
    try {
      await sleep(150)
      expect(lonely.published).to.have.length(0)
      await sleep(300)
      expect(lonely.published).to.have.length(1)
    } finally {
      alone.stop()
    }
  })

  it('sends no extra heartbeat for newcomers once one reached a mesh worth of peers', async () => {
    const { host, published, newcomer } = await fakeHost(PRESENCE_REACHED_PEERS)
    const service = new PresenceService(host, new PeerDirectory(), { role: Role.PROXY, network: 'local', version: '1', log: noLog, newcomerMinGapMs: 100, firstMaxDelayMs: 200 })
    service.start()
    try {
      await sleep(300)
      expect(published).to.have.length(1)
      newcomer()
      newcomer()
      await sleep(400)
      expect(published, 'newcomers learn us through /cocoon/info or our next heartbeat').to.have.length(1)
    } finally {
      service.stop()
    }
  })

  it('sends a heartbeat for new addresses, not for a self update that only changed protocols', async () => {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const published: number[] = []
    let addrs = [multiaddr('/ip4/127.0.0.1/tcp/4001')]
    const events = new EventTarget()
    const pubsub = Object.assign(new EventTarget(), {
      topicValidators: new Map(),
      subscribe: () => {},
      unsubscribe: () => {},
      publish: async () => { published.push(Date.now()); return { recipients: [] } }
    })
    const host = {
      peerId,
      getMultiaddrs: () => addrs,
      services: { pubsub },
      addEventListener: events.addEventListener.bind(events),
      removeEventListener: events.removeEventListener.bind(events)
    } as unknown as PresenceHost
    const service = new PresenceService(host, new PeerDirectory(), { role: Role.WORKER, network: 'local', version: '1', log: noLog, firstMaxDelayMs: 200 })
    service.start()
    try {
      await sleep(300)
      expect(published).to.have.length(1)
      events.dispatchEvent(new CustomEvent('self:peer:update'))
      await sleep(300)
      expect(published, 'same addresses: nothing new to say').to.have.length(1)
      addrs = [...addrs, multiaddr('/ip4/10.0.0.2/tcp/4001')]
      events.dispatchEvent(new CustomEvent('self:peer:update'))
      await sleep(300)
      expect(published).to.have.length(2)
    } finally {
      service.stop()
    }
  })

  it('defers, never drops, the heartbeat for a newcomer that arrives inside the gap, and sends one for a burst', async () => {
    const { host, published, newcomer } = await fakeHost()
    const service = new PresenceService(host, new PeerDirectory(), { role: Role.WORKER, network: 'local', version: '1', log: noLog, newcomerMinGapMs: 400, firstMaxDelayMs: 200 })
    service.start()
    try {
      await sleep(300) // the start-up heartbeat goes out after the coalescing delay
      expect(published).to.have.length(1)
      const first = published[0]
      newcomer() // inside the gap: must be deferred to its end
      newcomer() // a burst of newcomers: still one heartbeat
      await sleep(150)
      expect(published, 'nothing before the gap ends').to.have.length(1)
      await sleep(400)
      expect(published, 'one deferred heartbeat').to.have.length(2)
      expect(published[1] - first).to.be.at.least(380)
    } finally {
      service.stop()
    }
  })
})

describe('presence publishers and the swarm size they state', () => {
  const record = (i: number, role: Role, workers?: number, source: 'presence' | 'info' = 'presence'): Parameters<PeerDirectory['upsert']>[0] =>
    ({ peerId: `peer-${i}`, role, network: 'local', version: '1', addrs: [], seq: 1n, intervalMs: PRESENCE_INTERVAL_MS, workers, source })

  it('estimates the workers as the median the proxies state, or the workers it knows itself', () => {
    const directory = new PeerDirectory()
    expect(directory.workersEstimate()).to.equal(0)
    for (let i = 0; i < 4; i++) directory.upsert(record(i, Role.WORKER, undefined, 'info'))
    expect(directory.workersEstimate(), 'no proxy stated a count yet').to.equal(4)
    directory.upsert(record(10, Role.PROXY, 300))
    directory.upsert(record(11, Role.PROXY, 280))
    directory.upsert(record(12, Role.PROXY, 290))
    expect(directory.workersEstimate()).to.equal(290)
    // one proxy stating a huge number moves the median by one place, not to its number
    directory.upsert(record(13, Role.PROXY, 4_000_000_000))
    expect(directory.workersEstimate()).to.equal(300)
    // a count stated by a worker (no proxy) is not taken
    const other = new PeerDirectory()
    other.upsert(record(0, Role.WORKER, 1_000_000))
    expect(other.workersEstimate()).to.equal(1)
  })

  it('sizes the heartbeat interval by the publishers it knows, not by every peer', () => {
    const directory = new PeerDirectory()
    const service = new PresenceService({} as never, directory, { role: Role.PROXY, network: 'local', version: '1', log: noLog })
    for (let i = 0; i < 500; i++) directory.upsert(record(i, Role.WORKER, undefined, 'info'))
    expect(service.intervalMs(), 'workers send no presence: they do not lengthen it').to.equal(PRESENCE_INTERVAL_MS)
    for (let i = 500; i < 560; i++) directory.upsert(record(i, Role.PROXY, 500))
    directory.upsert(record(560, Role.BOOTSTRAP))
    expect(directory.publishers()).to.equal(61)
    expect(service.intervalMs()).to.equal(61 * PRESENCE_PER_PEER_MS)
    for (let i = 600; i < 30_000; i++) directory.upsert(record(i, Role.PROXY, 500))
    expect(service.intervalMs()).to.equal(PRESENCE_MAX_INTERVAL_MS)
  })

  it('a listening node sends no heartbeat of its own, but hears others and still answers a direct announce', async () => {
    const key = await generateKeyPair('Ed25519')
    const peerId = peerIdFromPrivateKey(key)
    const published: Uint8Array[] = []
    const subs = new EventTarget()
    const host = {
      peerId,
      getMultiaddrs: () => [multiaddr(`/ip4/127.0.0.1/tcp/4001/p2p/${peerId.toString()}`)],
      addEventListener: () => {},
      removeEventListener: () => {},
      services: {
        pubsub: Object.assign(subs, {
          topicValidators: new Map(),
          subscribe: () => {},
          unsubscribe: () => {},
          getSubscribers: () => [peerId, peerId, peerId, peerId],
          publish: async (_topic: string, data: Uint8Array) => { published.push(data); return { recipients: [peerId] } }
        })
      }
    } as unknown as PresenceHost
    const service = new PresenceService(host, new PeerDirectory(), { role: Role.WORKER, network: 'local', version: '1', log: noLog, heartbeat: false, firstMaxDelayMs: 50, intervalMs: 100 })
    service.start()
    try {
      subs.dispatchEvent(new CustomEvent('subscription-change', { detail: { subscriptions: [{ topic: PRESENCE_TOPIC, subscribe: true }] } }))
      await new Promise(resolve => setTimeout(resolve, 300))
      expect(published, 'no first heartbeat, no interval heartbeat, none for newcomers').to.have.length(0)
      expect(host.services.pubsub.topicValidators.has(PRESENCE_TOPIC), 'it still validates and records what it hears').to.equal(true)
      await service.announce()
      expect(published).to.have.length(1)
      expect(Presence.decode(published[0]).role).to.equal(Role.WORKER)
    } finally {
      service.stop()
    }
  })

  it('states the workers a proxy lists, and records that count only for proxies', async () => {
    const directory = new PeerDirectory()
    const service = new PresenceService({} as never, directory, { role: Role.PROXY, network: 'local', version: '1', log: noLog })
    const proxyKey = await generateKeyPair('Ed25519')
    const proxy = peerIdFromPrivateKey(proxyKey)
    const now = Date.now()
    const message = (role: Role, workers: number): Message => ({
      type: 'signed',
      from: proxy,
      topic: PRESENCE_TOPIC,
      data: Presence.encode({ peerId: proxy.toMultihash().bytes, role, network: 'local', version: '1', addrs: [], timestampMs: BigInt(now), seq: BigInt(now) * 1000n + BigInt(workers), intervalMs: 30_000, workers }),
      sequenceNumber: 1n,
      signature: new Uint8Array(64),
      key: proxy.publicKey!
    })
    expect(service.validateAndRecord(message(Role.PROXY, 120))).to.equal(TopicValidatorResult.Accept)
    expect(directory.get(proxy.toString())?.workers).to.equal(120)
    expect(directory.workersEstimate()).to.equal(120)
  })
})

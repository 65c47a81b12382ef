import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { ConfigError } from '../../src/errors.js'
import { CAPACITY_MAX_BYTES } from '../../src/p2p/constants.js'
import { CapacityAnnouncement } from '../../src/gen/capacity.pb.js'
import { CapacityAnnouncer } from '../../src/roles/worker/capacity-announcer.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { ConsoleLog } from '../../src/ops/console-log.js'
import type { ServedModel } from '../../src/roles/worker/capacity-announcer.js'
import type { Accelerator } from '../../src/roles/worker/gpu.js'
import type { Logger } from '@libp2p/interface'

const model = (name: string): ServedModel => ({
  name, weightsHash: new Uint8Array(32).fill(7), contextLength: 131_072, pricePromptPerM: 123_456_789n, priceCompletionPerM: 987_654_321n, maxConcurrent: 64, synthetic: false, description: 'a test model'
})
const gpu = (index: number): Accelerator => ({
  kind: 'gpu', index, name: 'NVIDIA H100 80GB HBM3', uuid: `GPU-${index}`, memoryTotalMiB: 81559, memoryUsedMiB: 40000, utilizationPct: 97, driver: '550.54.15', computeCapability: '9.0'
})

describe('capacity announcer', () => {
  /** An announcer on a stand-in node: gossip publishes are recorded, DHT records accepted. */
  async function announcer (published: Uint8Array[], recipients: () => number = () => 0, extra: { knownWorkers?: () => number, knownProxies?: () => number } = {}): Promise<CapacityAnnouncer> {
    const peerId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const node = {
      peerId,
      getMultiaddrs: () => [],
      contentRouting: { provide: async () => {} },
      services: {
        pubsub: { publish: async (_topic: string, data: Uint8Array) => { published.push(data); return { recipients: Array.from({ length: recipients() }, () => peerId) } } },
        dht: { cancelReprovide: async () => {} }
      }
    } as unknown as CocoonLibp2p
    const silent = { info: () => {}, warn: () => {}, error: () => {} } as unknown as ConsoleLog
    return new CapacityAnnouncer(node, {
      network: 'local', intervalMs: 5_000, gossip: true, attestationKind: 'simulated', attestationDigest: new Uint8Array(32),
      ...extra,
      log: Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as unknown as Logger,
      console: silent
    })
  }

  it('announces again soon, backing off, until every proxy it knows (up to eight) has challenged it', async () => {
    let proxies = 0
    const a = await announcer([], () => 0, { knownWorkers: () => 2_000, knownProxies: () => proxies })
    expect(a.intervalMs(), 'a swarm of 2 000 workers').to.equal(500_000)
    // no proxy known yet (workers take no presence): it waits for one to challenge it
    expect([a.nextHeartbeatMs(), a.nextHeartbeatMs()], 'no proxy known').to.deep.equal([5_000, 10_000])
    proxies = 4
    expect([a.nextHeartbeatMs(), a.nextHeartbeatMs()]).to.deep.equal([20_000, 40_000])
    a.confirmedBy('proxy-1')
    a.confirmedBy('proxy-2')
    expect(a.nextHeartbeatMs(), 'two of four: the wait starts again').to.equal(5_000)
    a.confirmedBy('proxy-3')
    expect(a.nextHeartbeatMs(), 'three of four: one proxy has not listed it').to.equal(5_000)
    a.confirmedBy('proxy-4')
    expect(a.nextHeartbeatMs()).to.equal(500_000)
    // in a swarm of many proxies, eight are enough
    const b = await announcer([], () => 0, { knownWorkers: () => 2_000, knownProxies: () => 50 })
    for (let i = 0; i < 7; i++) b.confirmedBy(`p${i}`)
    expect(b.nextHeartbeatMs()).to.equal(5_000)
    b.confirmedBy('p7')
    expect(b.nextHeartbeatMs()).to.equal(500_000)
  })

  it('keeps a full worker (16 models, 8 GPUs) well under the 4 KiB limit', async () => {
    const a = await announcer([])
    a.setAccelerators(Array.from({ length: 8 }, (_, i) => gpu(i)))
    await a.setModels(Array.from({ length: 16 }, (_, i) => model(`meta-llama/Llama-3.1-70B-Instruct-Q4_K_M-${i}`)))
    const bytes = a.current()
    expect(CapacityAnnouncement.decode(bytes).models).to.have.length(16)
    expect(bytes.length).to.be.lessThan(CAPACITY_MAX_BYTES * 0.75)
  })

  it('refuses models whose announcement would not fit, naming worker.models', async () => {
    const a = await announcer([])
    // the longest names the config allows, on a machine with 16 GPUs
    a.setAccelerators(Array.from({ length: 16 }, (_, i) => ({ ...gpu(i), name: 'g'.repeat(128), driver: 'd'.repeat(64) })))
    const err = await a.setModels(Array.from({ length: 16 }, (_, i) => model(`${'x'.repeat(120)}-${i}`))).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(ConfigError)
    expect((err as ConfigError).key).to.equal('worker.models')
    expect((err as Error).message).to.match(/over the 4096-byte limit/)
    expect(a.status().models, 'nothing served after a refusal').to.deep.equal([])
  })

  it('announces again for a subscribing proxy only while its last announcement reached none', async () => {
    const published: Uint8Array[] = []
    let reached = 0
    const a = await announcer(published, () => reached)
    const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
    a.start()
    await a.setModels([model('m')])
    await sleep(300)
    expect(published, 'the start-up announcement').to.have.length(1)
    const [topic] = a.topics()
    // it reached nobody (still connecting): the first proxy to subscribe brings another, after a fifth of the heartbeat
    reached = 2
    a.onProxySubscribed(topic)
    await sleep(1_300)
    expect(published).to.have.length(2)
    // that one reached two proxies, whose mesh carries it to the rest: more subscriptions change nothing
    a.onProxySubscribed(topic)
    a.onProxySubscribed(topic)
    await sleep(1_300)
    expect(published).to.have.length(2)
    await a.stop()
  })

  it('announces free slots as jobs start and end, with a newer sequence number each time', async () => {
    const published: Uint8Array[] = []
    const a = await announcer(published)
    const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }
    const freeSlots = (): Array<number | null> => published.map(b => CapacityAnnouncement.decode(b).models[0]?.freeSlots ?? null)
    a.start()
    await a.setModels([model('m')])
    await sleep(300)
    // filling the model up, and freeing a slot again, go out at once
    a.setRunning('m', 64)
    await sleep(300)
    a.setRunning('m', 60)
    await sleep(300)
    expect(freeSlots()).to.deep.equal([64, 0, 4])
    // a change that neither fills nor frees the model waits a fifth of the 5 s heartbeat since the last announcement
    a.setRunning('m', 59)
    await sleep(300)
    expect(freeSlots()).to.deep.equal([64, 0, 4])
    await sleep(1_000)
    expect(freeSlots()).to.deep.equal([64, 0, 4, 5])
    await a.stop()
    const seen = published.map(b => CapacityAnnouncement.decode(b))
    expect(freeSlots()).to.deep.equal([64, 0, 4, 5, null])
    expect(seen.every((s, i) => i === 0 || s.seq > seen[i - 1].seq)).to.equal(true)
  })
})

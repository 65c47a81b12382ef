import { join } from 'node:path'
import { expect } from 'chai'
import { CAPACITY_MIN_TTL_MS, CAPACITY_TOPIC } from '../../src/p2p/constants.js'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig, waitFor } from '../helpers.js'
import type { ProxyRole } from '../../src/roles/proxy/proxy-role.js'
import type { WorkerEntry } from '../../src/roles/proxy/worker-registry.js'
import type { RunningNode } from '../../src/roles/runtime.js'
import type { WorkerRole } from '../../src/roles/worker/worker-role.js'

const INTERVAL_MS = 1_000

describe('attested capacity on a loopback swarm', function () {
  this.timeout(60_000)
  let root: string
  let bootstrap: RunningNode
  let proxy: RunningNode
  let workers: RunningNode[] = []
  const stopped = new Set<RunningNode>()
  /** Worker timestamp to proxy registry, for each worker's first accepted announcement. */
  const firstAcceptMs = new Map<string, number>()

  const proxyRole = (): ProxyRole => proxy.role as ProxyRole
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

  before(async () => {
    root = await tempDir()
    bootstrap = await startNode(testConfig('bootstrap', join(root, 'bootstrap')), { logPrefix: 'bootstrap' })
    const boot = bootstrap.addrs()
    proxy = await startNode(testConfig('proxy', join(root, 'proxy'), boot), { logPrefix: 'proxy' })
    proxyRole().registry.addEventListener('worker:updated', (evt: CustomEvent<WorkerEntry>) => {
      const w = evt.detail
      if (!firstAcceptMs.has(w.peerId)) firstAcceptMs.set(w.peerId, w.lastSeenMs - w.announcedAtMs)
    })
    workers = await Promise.all([1, 2].map(async i =>
      startNode(testConfig('worker', join(root, `worker-${i}`), boot, { worker: { announceIntervalMs: INTERVAL_MS } }), { logPrefix: `worker-${i}` })))
  })

  after(async () => {
    await Promise.all(workers.filter(w => !stopped.has(w)).map(async w => { await w.stop() }))
    await proxy?.stop()
    await bootstrap?.stop()
    await cleanupTempDirs()
  })

  it('shows both workers in the proxy registry within 1 s of their announcement, with verified simulated attestation', async () => {
    const registry = proxyRole().registry
    await waitFor(() => workers.every(w => registry.get(w.peerId.toString())?.state === 'up'), 15_000, 'both workers in the registry')
    for (const w of workers) {
      const entry = registry.get(w.peerId.toString())
      expect(entry, w.peerId.toString()).to.not.equal(undefined)
      if (entry == null) return
      expect(entry.attestation.kind).to.equal('simulated')
      expect(entry.attestation.tcbStatus).to.equal('Simulated')
      // the digest the worker announced is the one of the evidence the proxy verified
      expect(entry.attestation.digest).to.equal(hex(w.tee?.digest ?? new Uint8Array()))
      expect(hex(entry.attestation.jobPublicKey)).to.equal(hex(w.tee?.jobPublicKey ?? new Uint8Array()))
      expect(entry.offers.map(o => o.model)).to.deep.equal(['cocoon-synthetic'])
      expect(entry.offers[0].freeSlots).to.equal(entry.offers[0].maxConcurrent)
      expect(entry.accelerators.length).to.be.greaterThan(0)
      const latency = firstAcceptMs.get(w.peerId.toString())
      expect(latency, 'announcement to registry, first time (includes the attestation challenge)').to.be.lessThan(1_000)
    }
    expect(registry.workersFor('cocoon-synthetic').map(x => x.entry.peerId).sort()).to.deep.equal(workers.map(w => w.peerId.toString()).sort())
    const validations = await proxy.metrics.registry.getSingleMetricAsString('cocoon_gossip_validation_total')
    expect(validations).to.match(new RegExp(`topic="${CAPACITY_TOPIC}",result="accept",reason="ok"\\} \\d+`))
    const attestations = await proxy.metrics.registry.getSingleMetricAsString('cocoon_attestations_total')
    expect(attestations).to.match(/kind="simulated",result="verified",reason="ok"\} [2-9]/)
    const verifySeconds = await proxy.metrics.registry.getSingleMetricAsString('cocoon_attestation_verify_seconds')
    expect(verifySeconds).to.match(/cocoon_attestation_verify_seconds_count\{kind="simulated"\} [2-9]/)
    const registrySize = await proxy.metrics.registry.getSingleMetricAsString('cocoon_registry_workers')
    expect(registrySize).to.match(/cocoon_registry_workers\{state="up"\} 2$/m)
  })

  it('lists the workers in the proxy status and the offer in the worker status', async () => {
    const status = await proxy.status()
    const listed = (status.roleStatus.workers as Array<{ peerId: string, attestation: { kind: string } }>)
    expect(listed.map(w => w.peerId).sort()).to.deep.equal(workers.map(w => w.peerId.toString()).sort())
    expect(listed.every(w => w.attestation.kind === 'simulated')).to.equal(true)
    const workerStatus = (workers[0].role as WorkerRole).status()
    expect(workerStatus.announcing.models.map(m => m.name)).to.deep.equal(['cocoon-synthetic'])
    expect(workerStatus.proxies).to.include(proxy.peerId.toString())
  })

  it('drops a worker that stops at once, and marks a crashed one down at once (it expires after its TTL)', async () => {
    const registry = proxyRole().registry
    const [crashing, leaving] = workers

    await leaving.stop()
    stopped.add(leaving)
    await waitFor(() => registry.get(leaving.peerId.toString()) == null, 5_000, 'the withdrawn worker to leave the registry')

    // a crash: the libp2p node goes away without the role saying goodbye
    await crashing.node.stop()
    await waitFor(() => registry.get(crashing.peerId.toString())?.state === 'down', 2_000, 'the crashed worker to be marked down')
    expect(registry.workersFor('cocoon-synthetic')).to.deep.equal([])
    // three of its intervals, but never less than the floor a stalled proxy needs (expiry itself: worker-registry unit tests)
    expect(registry.get(crashing.peerId.toString())?.ttlMs).to.equal(Math.max(CAPACITY_MIN_TTL_MS, 3 * INTERVAL_MS))
    await crashing.stop()
    stopped.add(crashing)
  })

  it('finds a worker through the DHT alone when no announcement reached it, and attests it', async () => {
    const model = 'dht-only-model'
    const quiet = await startNode(testConfig('worker', join(root, 'quiet-worker'), bootstrap.addrs(), {
      worker: {
        gossip: false,
        models: [{ name: model, contextLength: 4096, pricePromptPerM: 1_000, priceCompletionPerM: 2_000, maxConcurrent: 2 }]
      }
    }), { logPrefix: 'quiet-worker' })
    workers.push(quiet)
    const role = quiet.role as WorkerRole
    await waitFor(() => role.status().announcing.dht.every(k => k.provided), 20_000, `the worker to provide model:${model}`)
    const registry = proxyRole().registry
    expect(registry.get(quiet.peerId.toString()), 'no gossip from this worker').to.equal(undefined)

    const found = await proxyRole().findWorkers(model)
    expect(found.queriedDht).to.equal(true)
    expect(found.providers).to.deep.include({ peerId: quiet.peerId.toString(), verdict: 'accepted' })
    expect(found.workers.map(w => w.entry.peerId)).to.deep.equal([quiet.peerId.toString()])
    const entry = found.workers[0].entry
    expect(entry.source).to.equal('dht')
    expect(entry.attestation.kind).to.equal('simulated')
    expect(entry.attestation.digest).to.equal(hex(quiet.tee?.digest ?? new Uint8Array()))
    expect(found.workers[0].offer.priceCompletionPerM).to.equal(2_000n)

    // now in the registry, the next lookup needs no DHT query
    const again = await proxyRole().findWorkers(model)
    expect(again.queriedDht).to.equal(false)

    // unloading the model cancels its DHT record; the new one is provided
    const [served] = role.status().announcing.models
    await role.announcer.setModels([{
      name: 'replacement-model', weightsHash: new Uint8Array(0), contextLength: served.contextLength,
      pricePromptPerM: 1_000n, priceCompletionPerM: 2_000n, maxConcurrent: 2, synthetic: false, description: ''
    }])
    expect(role.status().announcing.dht.map(k => k.name)).to.deep.equal(['model:replacement-model'])
    await waitFor(() => role.status().announcing.dht.every(k => k.provided), 20_000, 'the replacement model to be provided')
  })
})

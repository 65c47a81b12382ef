/**
 * Mutated job requests against the proxy's /cocoon/job and the worker's
 * /cocoon/work handlers (over in-memory streams): every one is answered with
 * a typed error frame (BAD_REQUEST, or a later check's code), never INTERNAL
 * and never silence, and the handlers keep serving.
 */
import '../../src/polyfills.js'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { lpStream } from '@libp2p/utils'
import { expect } from 'chai'
import { JOB_PROTOCOL, WORK_PROTOCOL } from '../../src/p2p/constants.js'
import { ErrorCode, Frame } from '../../src/gen/framing.pb.js'
import { JobKind, JobRequest, WorkRequest } from '../../src/gen/job.pb.js'
import { ProxyJobService } from '../../src/roles/proxy/job-service.js'
import { SyntheticBackend } from '../../src/roles/worker/backends/synthetic.js'
import { WorkService } from '../../src/roles/worker/work-service.js'
import { noLog } from '../helpers.js'
import { MemoryNet } from '../memory-net.js'
import type { CocoonLibp2p } from '../../src/p2p/node.js'
import type { WorkerEvidence } from '../../src/roles/proxy/worker-evidence.js'
import type { WorkerLookup } from '../../src/roles/proxy/worker-lookup.js'
import type { WorkerRegistry } from '../../src/roles/proxy/worker-registry.js'

const MUTATIONS = 200

describe('mutated job requests', function () {
  this.timeout(60_000)

  it('get a typed error frame from the proxy and the worker, never INTERNAL, and the handlers keep serving', async () => {
    const net = new MemoryNet()
    const proxyId = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    const workerKey = await generateKeyPair('Ed25519')
    const workerId = peerIdFromPrivateKey(workerKey)
    const proxy = new ProxyJobService(net.add(proxyId) as unknown as CocoonLibp2p, {
      registry: { offersFor: () => [], models: () => [], recordResult: () => {} } as unknown as WorkerRegistry,
      evidence: { get: async () => new Uint8Array(0), forget: () => {} } as unknown as WorkerEvidence,
      lookup: { find: async () => {} } as unknown as WorkerLookup,
      maxJobs: 64,
      maxJobsPerClient: 64,
      lookupWaitMs: 10,
      log: noLog
    })
    await proxy.start()
    const backend = new SyntheticBackend({ models: [{ name: 'm', contextLength: 4096 }] })
    await backend.start()
    const worker = new WorkService(net.add(workerId) as unknown as CocoonLibp2p, {
      backend,
      jobKey: { privateKey: new Uint8Array(32).fill(1), publicKey: new Uint8Array(32).fill(2) },
      signer: workerKey,
      peerId: workerId.toString(),
      models: [{ name: 'm', maxConcurrent: 4, contextLength: 4096, pricePromptPerM: 0n, priceCompletionPerM: 1_000n }],
      log: noLog
    })
    await worker.start()
    const client = net.add(peerIdFromPrivateKey(await generateKeyPair('Ed25519')))
    const header = { requestId: 'ab'.repeat(16), model: 'm', kind: JobKind.CHAT, maxTokens: 16, maxPricePromptPerM: 10n ** 9n, maxPriceCompletionPerM: 10n ** 9n, deadlineMs: 5_000, channel: '' }
    const targets = [
      { protocol: JOB_PROTOCOL, peer: proxyId, valid: JobRequest.encode({ header, candidates: 2 }) },
      { protocol: WORK_PROTOCOL, peer: workerId, valid: WorkRequest.encode({ header, sealed: { worker: workerId.toString(), enc: new Uint8Array(32), ciphertext: new Uint8Array(40) } }) }
    ]
    let seed = 7
    const random = (): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff }
    for (const { protocol, peer, valid } of targets) {
      const codes = new Map<string, number>()
      for (let i = 0; i < MUTATIONS; i++) {
        const bytes = new Uint8Array(valid)
        for (let k = 1 + Math.floor(random() * 4); k > 0; k--) bytes[Math.floor(random() * bytes.length)] = Math.floor(random() * 256)
        const stream = await client.dialProtocol(peer, protocol)
        const lp = lpStream(stream)
        await lp.write(Frame.encode({ message: bytes }))
        const answer = Frame.decode(await lp.read({ signal: AbortSignal.timeout(5_000) }))
        stream.abort(new Error('done'))
        const code = answer.error?.code ?? 'a message'
        codes.set(code, (codes.get(code) ?? 0) + 1)
      }
      expect(codes.has(ErrorCode.INTERNAL), `${protocol}: ${JSON.stringify([...codes])}`).to.equal(false)
      expect(codes.get(ErrorCode.BAD_REQUEST) ?? 0, `${protocol}: most mutations break the request`).to.be.above(MUTATIONS / 2)
    }
    await proxy.stop()
    await worker.stop()
    await backend.stop()
  })
})

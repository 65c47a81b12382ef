import { generateKeyPair } from '@libp2p/crypto/keys'
import { defaultLogger } from '@libp2p/logger'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import { PeerAttestations } from '../../src/tee/peer-attestations.js'
import { statedWorkers } from '../../src/roles/proxy/proxy-role.js'
import { waitFor } from '../helpers.js'
import type { EvidenceChecker } from '../../src/tee/peer-attestations.js'

describe('peer attestations', () => {
  it('counts the peers being challenged or queued, which a proxy states as workers it knows', async () => {
    const peers = await Promise.all([1, 2, 3].map(async () => peerIdFromPrivateKey(await generateKeyPair('Ed25519'))))
    const release: Array<() => void> = []
    // a dial that hangs until released, then fails: the peer is unreachable
    const host = {
      dialProtocol: async () => {
        await new Promise<void>(resolve => { release.push(resolve) })
        throw new Error('unreachable')
      }
    }
    const verifier: EvidenceChecker = { verify: async () => { throw new Error('never reached') } }
    const attestations = new PeerAttestations(host, { verifier, log: defaultLogger().forComponent('test:attest') })
    expect(attestations.pending).to.equal(0)
    const outcomes = peers.map(async p => attestations.attest(p).then(() => 'attested', (err: Error) => err.message))
    // a second request for the same peer shares its challenge
    const again = attestations.attest(peers[0]).catch(() => {})
    expect(attestations.pending).to.equal(3)
    await waitFor(() => release.length === 3, 2_000, 'three dials')
    for (const r of release) r()
    expect(await Promise.all(outcomes)).to.deep.equal(['unreachable', 'unreachable', 'unreachable'])
    await again
    expect(attestations.pending).to.equal(0)
  })

  it('states pending challenges as workers only up to the workers already listed', () => {
    // forming: 300 listed, 600 being checked -> 600, so workers lengthen their heartbeat early
    expect(statedWorkers(300, 600)).to.equal(600)
    expect(statedWorkers(300, 50)).to.equal(350)
    // a spammer's unreachable identities fill the queue: at most doubles the count
    expect(statedWorkers(16, 4_000)).to.equal(32)
    expect(statedWorkers(0, 4_000)).to.equal(0)
  })
})

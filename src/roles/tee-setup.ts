/**
 * Builds a node's attestation pieces from its configuration: the evidence
 * provider (tdx where the kernel offers configfs-tsm, else simulated), the
 * job-encryption key, the Attestor that binds both to the libp2p key, and
 * the verifier with the network's policy for checking other peers.
 */
import { createHash } from 'node:crypto'
import { publicKeyToProtobuf } from '@libp2p/crypto/keys'
import { toString as toHex } from 'uint8arrays/to-string'
import { Attestor, EvidenceVerifier } from '../tee/attestor.js'
import { imageHash } from '../tee/binding.js'
import { DcapVerifier } from '../tee/dcap.js'
import { loadOrCreateJobKey } from '../tee/job-key.js'
import { policyFor } from '../tee/policy.js'
import { buildDigest, SimulatedProvider, SimulatedVerifier, simulatedMeasurements } from '../tee/simulated.js'
import { TdxProvider, tsmAvailable } from '../tee/tdx.js'
import type { NodeConfig } from '../config/schema.js'
import type { ConsoleLog } from '../ops/console-log.js'
import type { AttestationPolicy, EvidenceKind, EvidenceProvider, Measurements } from '../tee/types.js'
import type { PrivateKey } from '@libp2p/interface'

export interface NodeTee {
  kind: EvidenceKind
  attestor: Attestor
  verifier: EvidenceVerifier
  policy: AttestationPolicy
  jobPublicKey: Uint8Array
  jobPrivateKey: Uint8Array
  /** What capacity announcements carry (sha256, 32 bytes). */
  digest: Uint8Array
  imageHash: string
}

export async function setupTee (config: NodeConfig, privateKey: PrivateKey, console: ConsoleLog): Promise<NodeTee> {
  const jobKey = await loadOrCreateJobKey(config.dataDir)
  if (jobKey.created) console.info(`created a new job-encryption key in ${jobKey.path}`)
  const { provider, measurements: simulated } = chooseProvider(config)
  const attestor = new Attestor({
    provider,
    libp2pPublicKey: publicKeyToProtobuf(privateKey.publicKey),
    jobPublicKey: jobKey.publicKey,
    measurements: simulated
  })
  const { policy, verifier } = setupVerifier(config)
  const digest = await attestor.digest()
  const image = imageHash(await attestor.measurements())
  if (!policy.acceptKinds.includes(provider.kind)) {
    console.warn(`this node's ${provider.kind} evidence is refused by the ${config.network} network's policy; peers will not trust it`)
  }
  console.info(`attestation: ${provider.kind}${provider.kind === 'simulated' ? ' (development only, not hardware evidence)' : ''}, image ${image.slice(0, 16)}…, digest ${toHex(digest, 'base16').slice(0, 16)}…`)
  return {
    kind: provider.kind,
    attestor,
    verifier,
    policy,
    jobPublicKey: jobKey.publicKey,
    jobPrivateKey: jobKey.privateKey,
    digest,
    imageHash: image
  }
}

/** The checking half alone (clients): the network's policy and a verifier for every evidence kind. */
export function setupVerifier (config: NodeConfig): { policy: AttestationPolicy, verifier: EvidenceVerifier } {
  const policy = configuredPolicy(config)
  const verifier = new EvidenceVerifier({
    policy,
    verifiers: [new SimulatedVerifier(), new DcapVerifier({ pccsUrl: config.attestation.pccsUrl })]
  })
  return { policy, verifier }
}

/** The provider, and its measurements when known up front (simulated); a TD's come from its first quote. */
function chooseProvider (config: NodeConfig): { provider: EvidenceProvider, measurements?: Measurements } {
  const { provider, tsmPath } = config.attestation
  if (provider === 'tdx' || (provider === 'auto' && tsmAvailable(tsmPath))) return { provider: new TdxProvider({ root: tsmPath }) }
  const measurements = simulatedMeasurements({ buildDigest: buildDigest(), configDigest: configDigest(config) })
  return { provider: new SimulatedProvider(measurements), measurements }
}

/** What the simulated RTMR3 measures: the parts of the config that decide what the node serves. */
function configDigest (config: NodeConfig): Uint8Array {
  const served = { role: config.role, network: config.network, models: config.role === 'worker' ? config.worker.models : [] }
  return new Uint8Array(createHash('sha256').update(JSON.stringify(served)).digest())
}

/** The network's default policy with the operator's overrides applied. */
export function configuredPolicy (config: NodeConfig): AttestationPolicy {
  const a = config.attestation
  const base = policyFor(config.network)
  let acceptKinds = base.acceptKinds
  if (a.acceptSimulated === true && !acceptKinds.includes('simulated')) acceptKinds = [...acceptKinds, 'simulated']
  if (a.acceptSimulated === false) acceptKinds = acceptKinds.filter(k => k !== 'simulated')
  return policyFor(config.network, {
    acceptKinds,
    ...(a.allowedMrtd.length > 0 ? { allowedMrtd: a.allowedMrtd } : {}),
    ...(a.allowedImageHashes.length > 0 ? { allowedImageHashes: a.allowedImageHashes } : {})
  })
}

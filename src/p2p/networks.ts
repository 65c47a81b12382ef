/**
 * Network presets. `local` is a swarm on loopback or a LAN; `public` joins the
 * public libp2p swarm, meets Cocoon peers through a rendezvous record in the
 * Amino DHT, and keeps private addresses out of every DHT.
 */
export const NETWORK_IDS = ['local', 'public'] as const
export type NetworkId = typeof NETWORK_IDS[number]

/**
 * The well-known Amino (IPFS) bootstrap peers, as shipped by kubo and helia.
 * Dialled only when `--network public` is chosen.
 */
export const AMINO_BOOTSTRAP_PEERS: readonly string[] = [
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmNnooDu7bfjPFoTZYxMNLWUQJyrVwtbZg5gBMjTezGAJN',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmQCU2EcMqAqQPR2i9bChDtGNJchTbq5TbXJJ16u19uLTa',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmbLHAnMoJPWSCR5Zhtx6BHJX9KiKNN6tpvbUcqanj75Nb',
  '/dnsaddr/bootstrap.libp2p.io/p2p/QmcZf59bWwK5XFi76CZX8cbJ4BhTzzA3gU1ZjYZcYW3dwt',
  '/dnsaddr/va1.bootstrap.libp2p.io/p2p/12D3KooWKnDdG3iXw9eTFijk3EWSunZcFi54Zka4wmtqtt6rPxc8',
  '/ip4/104.131.131.82/tcp/4001/p2p/QmaCpDMGvV2BGHeYERUEnRQAwe3N8SzbUtfsmvsqQLuvuJ'
]

/** Which addresses a node accepts into, and hands out from, its DHTs. */
export type AddressFilter = 'public' | 'all'

export interface NetworkPreset {
  id: NetworkId
  /** Default for `dht.addressFilter` when the config says `auto`. */
  addressFilter: AddressFilter
  /** Join the Amino DHT to publish and find the rendezvous record. */
  amino: boolean
  /** Reserve relay slots, hole-punch and probe reachability (nodes behind NAT). */
  natTraversal: boolean
  /** Default listen hosts: loopback for a local swarm, every interface for public. */
  listenHosts: string[]
  /**
   * The least a worker may ask per 1M completion tokens, nanoTON: nobody
   * works for free, and a worker that claims to would outrank every honest
   * one. Announcements under it are rejected, and a worker configured under
   * it does not start.
   */
  minPriceCompletionPerM: bigint
}

export const NETWORK_PRESETS: Record<NetworkId, NetworkPreset> = {
  local: {
    id: 'local',
    addressFilter: 'all',
    amino: false,
    natTraversal: false,
    listenHosts: ['/ip4/127.0.0.1'],
    minPriceCompletionPerM: 1n
  },
  public: {
    id: 'public',
    addressFilter: 'public',
    amino: true,
    natTraversal: true,
    listenHosts: ['/ip4/0.0.0.0', '/ip6/::'],
    minPriceCompletionPerM: 1_000_000n
  }
}

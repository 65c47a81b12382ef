/**
 * Node processes seal jobs and sign channel states with OpenSSL
 * (node:crypto); the portable `@noble/*` primitives the client core defaults
 * to stay for browsers. Same algorithms, same bytes on the wire.
 */
import { useNodeEd25519Primitives } from '../settlement/channel-key-node.js'
import { useNodeSealPrimitives } from '../tee/seal-node.js'

export function useNodeCrypto (): void {
  useNodeSealPrimitives()
  useNodeEd25519Primitives()
}

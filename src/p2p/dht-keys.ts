/**
 * DHT provider keys. A key is the CID (raw codec, sha2-256) of a namespaced
 * string, so every implementation derives the same key from the same name.
 */
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { RENDEZVOUS_NAMESPACE } from './constants.js'

export async function keyFor (name: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(`cocoon:${name}`))
  return CID.createV1(raw.code, digest)
}

/** Proxies provide this key in the Cocoon DHT; clients look it up. */
export async function proxyKey (): Promise<CID> {
  return keyFor('proxy')
}

/** Workers provide one key per model they serve. */
export async function modelKey (model: string): Promise<CID> {
  return keyFor(`model:${model}`)
}

/** The record Cocoon nodes publish in the public Amino DHT to find each other. */
export async function rendezvousKey (network: string): Promise<CID> {
  const digest = await sha256.digest(new TextEncoder().encode(`${RENDEZVOUS_NAMESPACE}/${network}`))
  return CID.createV1(raw.code, digest)
}

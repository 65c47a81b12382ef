/**
 * Which capacity topic carries a model's announcements. Sharding by model
 * keeps a proxy's gossip load proportional to the models it routes, not to
 * the whole network; a fixed set of shard topics (rather than one per model)
 * lets every node allow-list them and needs no catalogue of model names.
 */
import { sha256 } from '@noble/hashes/sha2.js'
import { CAPACITY_SHARDS, CAPACITY_SHARD_TOPICS } from './constants.js'

export function capacityShard (model: string): number {
  return sha256(new TextEncoder().encode(model))[0] % CAPACITY_SHARDS
}

export function capacityTopic (model: string): string {
  return CAPACITY_SHARD_TOPICS[capacityShard(model)]
}

/** The distinct shard topics of a set of models, in shard order. */
export function capacityTopicsFor (models: Iterable<string>): string[] {
  const shards = new Set<number>()
  for (const m of models) shards.add(capacityShard(m))
  return [...shards].sort((a, b) => a - b).map(s => CAPACITY_SHARD_TOPICS[s])
}

export function isCapacityTopic (topic: string): boolean {
  return CAPACITY_SHARD_TOPICS.includes(topic)
}

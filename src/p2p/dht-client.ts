/**
 * kad-dht runs a server's upkeep in client mode too, and two parts of it cost
 * a DHT client (a worker, a client) connections it does not need:
 *
 * - it tags its 20 closest routing-table peers keep-alive, so libp2p dials
 *   them again whenever their connection closes. A worker's closest peers are
 *   DHT servers (proxies, bootstrap nodes) it asked once; with the tag every
 *   worker held a connection to each of them for ever (every proxy of a
 *   1 000-node swarm sat at its connection limit), and when this node closed
 *   one as idle, libp2p re-dialled it at once: 30-50 handshakes a second in
 *   that swarm for nothing.
 * - it re-walks its routing table every 5 min (a query per bucket), which
 *   re-dials the servers idle connections were closed to.
 *
 * A client only needs some servers to ask, which its self-query found and its
 * routing table keeps; `quietDhtClient` turns the tagging off and slows the
 * table refresh to `refreshIntervalMs`. It must run before the node starts.
 * Both are kad-dht internals (checked against @libp2p/kad-dht 16); when they
 * are not where expected it changes nothing and says so, and a test fails.
 */

/** The parts of kad-dht's KadDHT instance this touches. */
interface KadDhtInternals {
  routingTable?: { closestPeerTagger?: unknown }
  routingTableRefresh?: { refreshInterval?: unknown }
}

/** A stand-in for kad-dht's closest-peer tagger that tags nothing. */
const NO_TAGGER = { start (): void {}, stop (): void {} }

/** Returns false (and changes nothing) when kad-dht's internals are not as expected. */
export function quietDhtClient (dht: unknown, refreshIntervalMs: number): boolean {
  const internals = dht as KadDhtInternals
  const table = internals.routingTable
  const refresh = internals.routingTableRefresh
  if (table?.closestPeerTagger == null || typeof refresh?.refreshInterval !== 'number') return false
  table.closestPeerTagger = NO_TAGGER
  refresh.refreshInterval = refreshIntervalMs
  return true
}

/** Whether `quietDhtClient` has been applied to this DHT (tests). */
export function isQuietDhtClient (dht: unknown): boolean {
  return (dht as KadDhtInternals).routingTable?.closestPeerTagger === NO_TAGGER
}

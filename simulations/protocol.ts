/** The messages between the simulator's coordinator and its host processes (over the IPC channel). */

export type AdversaryKind = 'forged_attestation' | 'capacity_spam' | 'stops_paying'

export interface NodeSpec {
  name: string
  role: 'bootstrap' | 'proxy' | 'worker' | 'client'
  bootstrap: string[]
  /** Config overrides (merged over the loopback test config). */
  overrides: Record<string, unknown>
}

export interface StartedNode {
  name: string
  role: NodeSpec['role']
  peerId: string
  addrs: string[]
  apiUrl: string | null
}

export interface JobSpec {
  client: string
  model: string
  promptTokens: number
  maxTokens: number
  timeoutMs: number
}

export interface JobOutcome {
  ok: boolean
  ttftMs: number | null
  latencyMs: number
  completionTokens: number
  /** Chunks with content that arrived (a failed request may have streamed some). */
  chunks: number
  costNanoton: string | null
  error: string | null
}

export interface ChannelView {
  address: string
  side: string
  peer: string
  /** Latest state's cumulative amount (this side's record), nanoTON. */
  cumulative: string | null
  countersigned: string | null
  seqno: string | null
}

export interface NodeView {
  name: string
  role: NodeSpec['role']
  peerId: string
  /** Proxies: workers in the registry (up). Clients: proxies known. */
  known: number
  /** Open connections. */
  connections: number
  channels: ChannelView[]
  /** Proxies: jobs relayed / failed / retried on another worker. */
  jobs?: { relayed: number, failed: number, retried: number }
  /** Workers: jobs completed and tokens produced by the backend. */
  work?: { completed: number, failed: number, tokens: number, running: number, slots: number }
}

export interface HostStats {
  host: number
  rssBytes: number
  /** RSS of the host before any node started. */
  baseRssBytes: number
  lagP99Ms: number
  lagMaxMs: number
  /** CPU time (user + system) over wall time since the last stats: 1 is one core busy. */
  cpuFraction: number
  /** The longest garbage-collection pause since the last stats, ms. */
  gcMaxPauseMs: number
  nodes: NodeView[]
  /** Gossip deliveries seen since the last stats: ms from the sender's timestamp to acceptance here. */
  gossipDelaysMs: number[]
  /** Gossip messages accepted here since the last stats, per role and topic family: count and payload bytes. */
  gossipAccepted: Record<string, { messages: number, bytes: number, nodes: number }>
  /** ms covered by gossipAccepted. */
  windowMs: number
  /** Connections opened and closed here since the last stats, over all nodes. */
  connectionsOpened: number
  connectionsClosed: number
}

export type HostRequest =
  | { op: 'start', id: number, specs: NodeSpec[], parallel: number }
  | { op: 'stop', id: number, name: string, crash: boolean }
  | { op: 'job', id: number, job: JobSpec }
  | { op: 'stats', id: number, channels: boolean }
  | { op: 'probe', id: number, name: string }
  /** How many nodes here (started before `sentAtMs`, epoch ms) have the heartbeat `seq` of `peerId` (or a newer one). */
  | { op: 'probeSeen', id: number, peerId: string, seq: string, sentAtMs: number }
  | { op: 'dhtLookup', id: number, name: string, model: string, timeoutMs: number }
  | { op: 'block', id: number, peers: string[] }
  | { op: 'unblock', id: number }
  | { op: 'slowDown', id: number, name: string, factor: number }
  | { op: 'adversary', id: number, kind: AdversaryKind, name: string, dial: string[], model: string, ratePerSec: number }
  /** Proxies here: their gossip score for `peerId`, and whether their registry lists it. */
  | { op: 'scores', id: number, peerId: string }
  | { op: 'shutdown', id: number }

export type HostReply =
  | { re: number, ok: true, value: unknown }
  | { re: number, ok: false, error: string }

/** Sent by a host unasked, as each node it was told to start is up. */
export interface HostProgress { progress: { name: string, role: NodeSpec['role'], startMs: number } }

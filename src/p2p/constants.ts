/** Every protocol-level tunable in one place, each with its unit in the name. */

export const COCOON_KAD_PROTOCOL = '/cocoon/kad/1.0.0'
export const AMINO_KAD_PROTOCOL = '/ipfs/kad/1.0.0'
/** The multiaddr code of `/p2p/<peer id>`; announced and stored addresses go without it. */
export const P2P_MULTIADDR_CODE = 421
export const INFO_PROTOCOL = '/cocoon/info/1.0.0'

export const PRESENCE_TOPIC = 'cocoon/1/presence'
/**
 * Capacity is sharded by model: a model's announcements go to topic
 * `cocoon/1/capacity/<shard>`, shard = first byte of sha256(model name) mod
 * CAPACITY_SHARDS. A proxy subscribes to the shards of the models it routes
 * (all of them by default). The bare name is the metric label of the family.
 */
export const CAPACITY_TOPIC = 'cocoon/1/capacity'
export const CAPACITY_SHARDS = 16
export const CAPACITY_SHARD_TOPICS = Array.from({ length: CAPACITY_SHARDS }, (_, i) => `${CAPACITY_TOPIC}/${i}`)
/** Topics this node tracks subscriptions for; others are ignored by gossipsub. */
export const KNOWN_TOPICS = [PRESENCE_TOPIC, ...CAPACITY_SHARD_TOPICS]

/** Largest frame accepted on /cocoon/info. */
export const INFO_MAX_FRAME_BYTES = 8 * 1024
/** Deadline for one /cocoon/info request or response. */
export const INFO_DEADLINE_MS = 5_000

/** Default deadline for one framed message when a protocol sets none. */
export const DEFAULT_MESSAGE_DEADLINE_MS = 10_000
/** Upper bound on any frame on any Cocoon protocol. */
export const ABSOLUTE_MAX_FRAME_BYTES = 16 * 1024 * 1024
/** How long a handler waits for the peer to read an error frame before resetting the stream. */
export const ERROR_FRAME_GRACE_MS = 1_000

/**
 * Presence heartbeats: interval, the largest message and how stale one may be.
 * The interval grows with the swarm (PRESENCE_PER_PEER_MS per known peer, up
 * to PRESENCE_MAX_INTERVAL_MS), so the presence each node receives stays
 * near 1000 / PRESENCE_PER_PEER_MS messages a second whatever the size.
 * Every node checks the signature of every heartbeat and forwards it to its
 * mesh, so this rate is paid by the whole swarm: one a second (past 30
 * peers) keeps it small next to capacity gossip; a directory entry lives
 * three intervals, and newcomers learn their direct peers at once through
 * /cocoon/info.
 */
export const PRESENCE_INTERVAL_MS = 30_000
export const PRESENCE_PER_PEER_MS = 1_000
export const PRESENCE_MAX_INTERVAL_MS = 6 * 60 * 60_000
export const PRESENCE_MAX_BYTES = 2 * 1024
export const PRESENCE_MAX_ADDRS = 32
export const PRESENCE_MAX_CLOCK_SKEW_MS = 60_000
/**
 * At most one extra heartbeat per this gap when new peers subscribe; the gap
 * also grows with the swarm (PRESENCE_NEWCOMER_PER_PEER_MS per known peer),
 * so newcomers cannot make every node re-announce to everyone: the swarm
 * sends at most 1000 / PRESENCE_NEWCOMER_PER_PEER_MS of these a second
 * however many peers join (or reconnect) meanwhile.
 */
export const PRESENCE_NEWCOMER_MIN_GAP_MS = 5_000
export const PRESENCE_NEWCOMER_PER_PEER_MS = 2_000
/** A heartbeat sent to this many peers has entered the mesh: no more extra ones for newcomers until one reaches fewer. */
export const PRESENCE_REACHED_PEERS = 3
/** The first heartbeat goes out once PRESENCE_REACHED_PEERS peers that take presence are connected, or after this long. */
export const PRESENCE_FIRST_MAX_DELAY_MS = 2_000
/** Bursts of triggers (address changes, newcomers) within this window send one heartbeat. */
export const PRESENCE_COALESCE_MS = 200
/** A peer not heard from for this many of its own heartbeat intervals is dropped from the directory. */
export const PRESENCE_EXPIRY_INTERVALS = 3
export const PRESENCE_EXPIRY_MS = PRESENCE_EXPIRY_INTERVALS * PRESENCE_INTERVAL_MS

/** Largest gossipsub RPC accepted from a peer. */
export const GOSSIP_MAX_RPC_BYTES = 1024 * 1024

/** DHT provider records (role keys, later model keys): lifetime and refresh. */
export const DHT_PROVIDE_VALIDITY_MS = 60 * 60 * 1000
export const DHT_REPROVIDE_THRESHOLD_MS = 20 * 60 * 1000
export const DHT_REPROVIDE_INTERVAL_MS = 5 * 60 * 1000
/** How often a DHT client (a worker, a client) looks up its own key and re-walks its routing table (kad-dht's defaults are 5 min). */
export const DHT_CLIENT_QUERY_SELF_INTERVAL_MS = 60 * 60 * 1000

/** Public-swarm rendezvous in the Amino DHT. */
export const RENDEZVOUS_NAMESPACE = 'cocoon-p2p/rendezvous/v1'
export const RENDEZVOUS_INITIAL_DELAY_MS = 1_000
export const RENDEZVOUS_INTERVAL_MS = 5 * 60 * 1000
export const RENDEZVOUS_FAST_INTERVAL_MS = 15_000
/** Below this many Cocoon peers, rendezvous runs at the fast interval. */
export const RENDEZVOUS_MIN_COCOON_PEERS = 3
export const RENDEZVOUS_MAX_DIALS_PER_ROUND = 20
export const RENDEZVOUS_QUERY_TIMEOUT_MS = 60_000

/** Shutdown: how long to wait for a graceful stop before exiting anyway. */
export const SHUTDOWN_TIMEOUT_MS = 10_000

/** Attestation: the configfs-tsm report directory and where DCAP collateral comes from by default. */
export const DEFAULT_TSM_PATH = '/sys/kernel/config/tsm/report'
export const DEFAULT_PCCS_URL = 'https://api.trustedservices.intel.com'
export const ATTEST_PROTOCOL = '/cocoon/attest/1.0.0'
/** A quote is ~5 KiB (an answer may carry two: the challenge's and the epoch's); a capacity announcement under 4 KiB; the rest is headroom. */
export const ATTEST_MAX_FRAME_BYTES = 32 * 1024
/** Real TDX quote generation can take a while; this bounds it. */
export const ATTEST_DEADLINE_MS = 10_000
/** Quotes produced at once per node; more callers wait (and time out), they do not pile up. */
export const ATTEST_MAX_CONCURRENT = 4
/** A verified attestation is trusted this long before the worker is challenged again. */
export const ATTESTATION_TTL_MS = 60 * 60_000
/** Evidence that failed verification is refused without a new fetch for this long. */
export const ATTESTATION_FAILURE_TTL_MS = 5 * 60_000

/**
 * Capacity announcements: cadence, size bound, clock tolerance. The
 * heartbeat grows with the swarm (CAPACITY_PER_WORKER_MS per known worker, up
 * to the 600 s the validator allows), so a proxy routing every model receives
 * about 1000 / CAPACITY_PER_WORKER_MS heartbeats a second whatever the size;
 * changes go out between heartbeats. The heartbeat only proves the worker
 * alive (a full or freed model goes out at once, other load changes within a
 * fifth of the heartbeat), and every proxy receives each one from about each
 * of its mesh peers: four a second keeps a proxy's capacity gossip well below
 * what it spends on jobs.
 */
export const CAPACITY_INTERVAL_MS = 5_000
export const CAPACITY_PER_WORKER_MS = 250
/**
 * The network-wide longest heartbeat a worker may choose; only the swarm's
 * size stretches it further (CAPACITY_PER_WORKER_MS per worker). A proxy
 * lists a worker for at most CAPACITY_TTL_INTERVALS of the interval its swarm
 * justifies, whatever the worker claims, so one that announced a 10-minute
 * heartbeat and went silent is not routed to for half an hour.
 */
export const CAPACITY_MAX_BASE_INTERVAL_MS = 60_000
/**
 * A registry entry lives three of its worker's intervals, but never less than
 * this: a proxy whose event loop stalled for longer than three short
 * intervals (a 1 000-node swarm forming) otherwise dropped nearly every
 * worker at once and re-attested them all. A worker that leaves withdraws,
 * and one whose connection drops is checked at once, so only a silent
 * worker is listed this long.
 */
export const CAPACITY_MIN_TTL_MS = 30_000
/** Free-slot changes that do not empty or refill a model go out at most once per this fraction of the heartbeat. */
export const CAPACITY_LOAD_GAP_FRACTION = 0.2
export const CAPACITY_MAX_BYTES = 4 * 1024
export const CAPACITY_MAX_CLOCK_SKEW_MS = 30_000
/** Changes within this window (load, start-up) go out as one announcement. */
export const CAPACITY_COALESCE_MS = 100
/** Listening addresses carried in an announcement (so proxies can dial the worker without a DHT lookup). */
export const CAPACITY_MAX_ADDRS = 8
/** A worker not heard from for this many intervals leaves the registry. */
export const CAPACITY_TTL_INTERVALS = 3
/**
 * How long the topic validator waits for a worker's evidence before ignoring
 * its message. Generous: a loaded proxy must not turn its own lag into
 * retries (each a new challenge), which would load it further.
 */
export const CAPACITY_ATTEST_TIMEOUT_MS = 10_000
/**
 * Challenges a proxy runs at once; the rest wait their turn (the deadline
 * above counts from the start of each). A thousand workers joining within
 * half a minute otherwise meant a thousand dials and handshakes at once, most
 * of them timing out and retried: the swarm never formed.
 */
export const ATTEST_PARALLEL = 16
/** Challenges waiting beyond this are refused (the worker's next announcement tries again). */
export const ATTEST_QUEUE_MAX = 4_096
/** After a worker could not be reached for a challenge, its announcements are ignored this long (doubling per failure, up to the max). */
export const ATTEST_RETRY_BACKOFF_MS = 2_000
export const ATTEST_RETRY_BACKOFF_MAX_MS = 60_000
/**
 * A worker keeps direct connections to a few proxies (chosen at random among
 * those it knows): its announcements enter the proxies' gossip mesh there.
 * Proxies never dial workers in advance; they connect on demand (an
 * attestation challenge, a job).
 */
export const WORKER_PROXY_LINKS = 3
/**
 * How often a worker asks its linked proxies for their /cocoon/info, to learn
 * how many workers the swarm has (workers take no presence; the count sizes
 * the capacity heartbeat): every 15 s while the count moves (a swarm
 * forming: a stale, low count made workers announce several times too
 * often), doubling while it holds, up to every 5 min.
 */
export const WORKER_SWARM_SIZE_REFRESH_MIN_MS = 15_000
export const WORKER_SWARM_SIZE_REFRESH_MAX_MS = 5 * 60_000
/** Connection-manager limits per role: a proxy serves many workers and clients, the others need a handful. */
export const MAX_CONNECTIONS_BY_ROLE = { bootstrap: 2_000, proxy: 1_000, worker: 100, client: 100 } as const
/** DHT fallback: how long a findProviders for a model may take, and how many workers it attests. */
export const MODEL_LOOKUP_TIMEOUT_MS = 10_000
export const MODEL_LOOKUP_MAX_WORKERS = 8

// Inference jobs
export const JOB_PROTOCOL = '/cocoon/job/1.0.0'
export const WORK_PROTOCOL = '/cocoon/work/1.0.0'
export const MODELS_PROTOCOL = '/cocoon/models/1.0.0'
/** Largest frame on the job protocols: a sealed request body of up to 4 MiB plus headers. */
export const JOB_MAX_FRAME_BYTES = 4 * 1024 * 1024 + 64 * 1024
/** Largest request body a client accepts (the sealed body must fit JOB_MAX_FRAME_BYTES, once per candidate worker). */
export const JOB_MAX_BODY_BYTES = 2 * 1024 * 1024
/** Deadline for the setup messages of a job (request, offer, body). */
export const JOB_SETUP_DEADLINE_MS = 10_000
/** Each hop passes on a deadline this much shorter than its own, so it can still answer. */
export const JOB_HOP_MARGIN_MS = 250
/** Workers a client seals a job for: the first, and one the proxy may retry on before the first chunk. */
export const JOB_MAX_CANDIDATES = 2
/** Model names: what clients ask for and what the DHT key `model:<name>` is made from. */
export const MODEL_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/+-]{0,127}$/
/** A worker refuses jobs whose deadline is longer than this. */
export const JOB_MAX_DEADLINE_MS = 3_600_000
/** Concurrent job streams per connection. */
export const JOB_MAX_STREAMS_PER_CONNECTION = 256
/** How long the proxy waits for a worker's epoch-bound evidence when it has none cached. */
export const JOB_EVIDENCE_TIMEOUT_MS = 3_000
/** A cancel frame gets this long to leave before the stream is reset. */
export const JOB_CANCEL_GRACE_MS = 50
export const MODELS_MAX_FRAME_BYTES = 256 * 1024

export const PAY_PROTOCOL = '/cocoon/pay/1.0.0'
/** A pay request or answer is a few hundred bytes; anything near this is an attack. */
export const PAY_MAX_FRAME_BYTES = 4 * 1024
/** Opening waits for the chain: a payee reads the contract before it answers. */
export const PAY_DEADLINE_MS = 30_000

/**
 * How long one address may take to become a connection (TCP, noise, yamux):
 * libp2p's default is 6 s. A loaded node (a bootstrap node while hundreds of
 * peers join) takes longer than that to finish handshakes it has already
 * started; a 1 000-node simulation saw most bootstrap dials cut off just short
 * of 6 s, each one wasted work for both ends, retried, and wasted again. The
 * answering side gives an upgrade 10 s (libp2p's inbound upgrade timeout).
 */
export const ADDRESS_DIAL_TIMEOUT_MS = 10_000
/** A whole dial, over all of a peer's addresses (libp2p's default is 10 s). */
export const DIAL_TIMEOUT_MS = 20_000

/** How often the connection monitor pings each open connection (libp2p's default is 10 s). */
export const CONNECTION_PING_INTERVAL_MS = 60_000
/** The least time a connection monitor ping may take before the connection is aborted (libp2p's is 5 s). */
export const CONNECTION_PING_MIN_TIMEOUT_MS = 20_000
/** How often yamux re-measures a connection's round trip (its default is 30 s; it pings once at open anyway). */
export const YAMUX_KEEPALIVE_MS = 5 * 60_000
/** Ping streams allowed per connection and direction (monitor and DHT may ping at once). */
export const PING_MAX_STREAMS = 4

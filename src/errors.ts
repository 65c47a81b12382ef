/**
 * Typed errors. Every error a user or a peer can cause carries a stable `code`
 * to match on, says what went wrong, and where possible what to do about it.
 */
export type CocoonErrorCode =
  | 'ERR_CONFIG'
  | 'ERR_IDENTITY'
  | 'ERR_FRAME_TOO_LARGE'
  | 'ERR_MALFORMED_MESSAGE'
  | 'ERR_DEADLINE'
  | 'ERR_STREAM_CLOSED'
  | 'ERR_REMOTE'
  | 'ERR_NODE_NOT_RUNNING'
  | 'ERR_ATTESTATION'
  | 'ERR_GPU_DISCOVERY'
  | 'ERR_SEAL'
  | 'ERR_CHANNEL'
  | 'ERR_CHANNEL_STORE'
  | 'ERR_CHAIN'
  | 'ERR_JOB_STATE'

export class CocoonError extends Error {
  readonly code: CocoonErrorCode

  constructor (code: CocoonErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/** A configuration value is missing or has the wrong form. `key` names it. */
export class ConfigError extends CocoonError {
  readonly key: string
  constructor (key: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', key === '' ? message : `${key}: ${message}`, options)
    this.key = key
  }
}

/** The node identity (private key file) cannot be read, parsed or written. */
export class IdentityError extends CocoonError {
  readonly path: string
  constructor (path: string, message: string, options?: { cause?: unknown }) {
    super('ERR_IDENTITY', `identity ${path}: ${message}`, options)
    this.path = path
  }
}

/** A frame on a protocol stream was larger than the protocol allows. */
export class FrameTooLargeError extends CocoonError {
  constructor (protocol: string, maxBytes: number, options?: { cause?: unknown }) {
    super('ERR_FRAME_TOO_LARGE', `${protocol}: frame exceeds the maximum of ${maxBytes} bytes`, options)
  }
}

/** Bytes on a protocol stream did not decode as the expected message. */
export class MalformedMessageError extends CocoonError {
  constructor (protocol: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_MALFORMED_MESSAGE', `${protocol}: malformed message: ${detail}`, options)
  }
}

/** A message did not arrive before its deadline. */
export class DeadlineError extends CocoonError {
  constructor (protocol: string, deadlineMs: number, options?: { cause?: unknown }) {
    super('ERR_DEADLINE', `${protocol}: no message within ${deadlineMs} ms`, options)
  }
}

/** The remote side closed the stream before the expected message. */
export class StreamClosedError extends CocoonError {
  constructor (protocol: string, options?: { cause?: unknown }) {
    super('ERR_STREAM_CLOSED', `${protocol}: stream closed before the expected message`, options)
  }
}

/** The remote side answered with an error frame. `remoteCode` is its code. */
export class RemoteError extends CocoonError {
  readonly remoteCode: string
  /** The remote's own words, without the protocol prefix. */
  readonly remoteMessage: string
  readonly retryAfterMs: number
  constructor (protocol: string, remoteCode: string, message: string, retryAfterMs = 0) {
    super('ERR_REMOTE', `${protocol}: remote error ${remoteCode}: ${message}`)
    this.remoteCode = remoteCode
    this.remoteMessage = message
    this.retryAfterMs = retryAfterMs
  }
}

/** No running node answered at the expected admin endpoint. */
export class NodeNotRunningError extends CocoonError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_NODE_NOT_RUNNING', message, options)
  }
}

/** Why attestation evidence was refused; stable label values for metrics. */
export type AttestationFailure =
  | 'malformed' // not a quote of the expected layout
  | 'signature' // the quote's signature chain does not verify
  | 'collateral' // collateral missing, expired or unobtainable
  | 'tcb' // the platform's TCB status is not accepted
  | 'binding' // REPORTDATA does not commit to this peer, job key and freshness
  | 'freshness' // nonce or epoch is not the expected one
  | 'policy' // kind, measurements or debug mode not allowed by the network's policy
  | 'unavailable' // this node cannot produce evidence of the requested kind

/** Attestation evidence could not be produced or did not verify. */
export class AttestationError extends CocoonError {
  readonly reason: AttestationFailure
  constructor (reason: AttestationFailure, message: string, options?: { cause?: unknown }) {
    super('ERR_ATTESTATION', `attestation (${reason}): ${message}`, options)
    this.reason = reason
  }
}

/**
 * Sealed job data did not open: a tampered, reordered or truncated
 * ciphertext, or one sealed to another key.
 */
export class SealError extends CocoonError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_SEAL', message, options)
  }
}

/**
 * A payment-channel state or operation was refused: a bad signature, a
 * replayed or older state, an amount over the deposit, a wrong channel.
 * `reason` is stable to match on.
 */
export type ChannelErrorReason =
  | 'bad_signature' | 'stale_state' | 'wrong_channel' | 'overspent' | 'decreasing'
  | 'unknown_channel' | 'not_open' | 'unpaid' | 'malformed' | 'seqno_jump' | 'overpaid'
export class ChannelError extends CocoonError {
  readonly reason: ChannelErrorReason
  constructor (reason: ChannelErrorReason, message: string, options?: { cause?: unknown }) {
    super('ERR_CHANNEL', `channel (${reason}): ${message}`, options)
    this.reason = reason
  }
}

/** The durable channel store could not be opened, read or written. Nothing was acknowledged. */
export class ChannelStoreError extends CocoonError {
  readonly path: string
  constructor (path: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CHANNEL_STORE', `channel store ${path}: ${message}`, options)
    this.path = path
  }
}

/** The chain (devnet emulator, local devnet server, or a TON API endpoint) refused or failed an operation. */
export class ChainError extends CocoonError {
  /** The contract's exit code when the chain ran and refused the message. */
  readonly exitCode: number | null
  constructor (message: string, options?: { cause?: unknown, exitCode?: number | null }) {
    super('ERR_CHAIN', message, options)
    this.exitCode = options?.exitCode ?? null
  }
}

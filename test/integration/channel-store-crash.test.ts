/**
 * The channel store's promise under a real crash: a child process saves
 * states as fast as it can and acknowledges each one after saveState
 * returned; it is SIGKILLed at a random moment, and every state it
 * acknowledged must be in the reopened store, which must not be corrupt.
 */
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import Database from 'better-sqlite3'
import { openChannelStore } from '../../src/settlement/store.js'
import { WRITER_CHANNEL, writerState } from '../fixtures/store-writer.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'

const WRITER = fileURLToPath(new URL('../fixtures/store-writer.js', import.meta.url))
const ROUNDS = 5
const MIN_ACKS = 300
const ROUND_TIMEOUT_MS = 8_000

interface Round {
  /** highest seqno acknowledged as saved, and as saved both-signed */
  acked: bigint
  ackedBoth: bigint
  signal: NodeJS.Signals | null
  stderr: string
}

/** Runs the writer until it acknowledged `killAfter` more states (plus a random few ms), then SIGKILLs it. */
async function crashRound (path: string, killAfter: number): Promise<Round> {
  const child = spawn(process.execPath, [WRITER, path], { stdio: ['ignore', 'pipe', 'pipe'] })
  const round: Round = { acked: 0n, ackedBoth: 0n, signal: null, stderr: '' }
  let acks = 0
  let pending = ''
  let killTimer: NodeJS.Timeout | undefined
  const kill = (): void => { child.kill('SIGKILL') }
  const deadline = setTimeout(kill, ROUND_TIMEOUT_MS)
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { round.stderr += chunk })
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n')
    // a line is only counted once complete: a torn last line is no acknowledgement
    pending = lines.pop() ?? ''
    for (const line of lines) {
      const [kind, seqno] = line.split(' ')
      if (kind === 'ack') {
        round.acked = BigInt(seqno)
        acks++
      } else if (kind === 'both') {
        round.ackedBoth = BigInt(seqno)
      }
    }
    if (acks >= killAfter && killTimer == null) killTimer = setTimeout(kill, Math.floor(Math.random() * 30))
  })
  // 'close' comes after stdout ended, so every ack the child wrote before it died is counted
  round.signal = await new Promise<NodeJS.Signals | null>(resolve => { child.once('close', (_code, signal) => { resolve(signal) }) })
  clearTimeout(deadline)
  clearTimeout(killTimer)
  if (acks < killAfter) throw new Error(`the writer acknowledged ${acks} states in ${ROUND_TIMEOUT_MS} ms, not ${killAfter}: ${round.stderr}`)
  return round
}

describe('channel store under kill -9', function () {
  this.timeout(60_000)

  after(async () => { await cleanupTempDirs() })

  it('keeps every acknowledged state, round after round, and the file stays sound', async () => {
    const path = join(await tempDir(), 'channels.sqlite')
    let previous = 0n
    for (let i = 0; i < ROUNDS; i++) {
      const round = await crashRound(path, MIN_ACKS + Math.floor(Math.random() * 500))
      expect(round.signal, round.stderr).to.equal('SIGKILL')
      expect(round.acked > previous, `round ${i} made progress`).to.equal(true)

      const store = openChannelStore(path)
      try {
        const latest = store.latestState(WRITER_CHANNEL)
        const both = store.latestBothSigned(WRITER_CHANNEL)
        expect(latest, `round ${i}`).to.not.equal(undefined)
        expect(latest!.seqno >= round.acked, `round ${i}: stored seqno ${latest?.seqno}, acknowledged ${round.acked}`).to.equal(true)
        // at most the one save in flight when the kill came is there unacknowledged
        expect(latest!.seqno <= round.acked + 1n, `round ${i}: stored seqno ${latest?.seqno}, acknowledged ${round.acked}`).to.equal(true)
        expect(latest).to.deep.equal(writerState(latest!.seqno, latest!.payeeSignature != null))
        expect(both).to.not.equal(undefined)
        expect(both!.seqno >= round.ackedBoth, `round ${i}: stored both-signed ${both?.seqno}, acknowledged ${round.ackedBoth}`).to.equal(true)
        expect(both).to.deep.equal(writerState(both!.seqno, true))
        previous = latest!.seqno
      } finally {
        store.close()
      }

      const db = new Database(path, { readonly: true })
      try {
        expect(db.pragma('integrity_check', { simple: true })).to.equal('ok')
      } finally {
        db.close()
      }
    }
  })
})

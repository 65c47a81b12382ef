import { expect } from 'chai'
import { IdleConnections } from '../../src/p2p/idle-connections.js'
import type { Connection, Logger } from '@libp2p/interface'

const noLog = Object.assign(() => {}, { error: () => {}, trace: () => {}, enabled: false }) as unknown as Logger

interface FakeConnection { id: string, peer: string, direction: 'inbound' | 'outbound', protocols: string[], openedAt: number, closed: boolean }

function connection (c: FakeConnection): Connection {
  return {
    id: c.id,
    remotePeer: { toString: () => c.peer },
    direction: c.direction,
    status: 'open',
    get streams () { return c.protocols.map(protocol => ({ protocol })) },
    timeline: { open: c.openedAt },
    close: async () => { c.closed = true },
    abort: () => { c.closed = true }
  } as unknown as Connection
}

describe('idle connections', () => {
  it('closes a connection it dialled once only background streams were left for the idle time, and no other', () => {
    let now = 1_000_000
    const conns: FakeConnection[] = [
      { id: 'dht', peer: 'server', direction: 'outbound', protocols: ['/meshsub/1.2.0', '/ipfs/id/1.0.0'], openedAt: now, closed: false },
      { id: 'job', peer: 'worker', direction: 'outbound', protocols: ['/meshsub/1.2.0', '/cocoon/work/1.0.0'], openedAt: now, closed: false },
      { id: 'in', peer: 'dialler', direction: 'inbound', protocols: [], openedAt: now, closed: false },
      { id: 'link', peer: 'proxy', direction: 'outbound', protocols: [], openedAt: now, closed: false }
    ]
    const idle = new IdleConnections({ getConnections: () => conns.filter(c => !c.closed).map(connection) }, {
      keep: peer => peer === 'proxy',
      log: noLog,
      idleMs: 60_000,
      now: () => now
    })
    now += 59_000
    idle.check()
    expect(conns.filter(c => c.closed)).to.have.length(0)
    now += 2_000
    idle.check()
    expect(conns.find(c => c.id === 'dht')?.closed, 'idle past the limit').to.equal(true)
    expect(conns.find(c => c.id === 'job')?.closed, 'a job stream is open').to.equal(false)
    expect(conns.find(c => c.id === 'in')?.closed, 'the peer that dialled decides').to.equal(false)
    expect(conns.find(c => c.id === 'link')?.closed, 'kept').to.equal(false)
    // the job ends: idle counts from the last time it was seen in use
    conns[1].protocols = ['/meshsub/1.2.0']
    now += 30_000
    idle.check()
    expect(conns[1].closed).to.equal(false)
    now += 31_000
    idle.check()
    expect(conns[1].closed).to.equal(true)
    expect(idle.closed).to.equal(2)
  })
})

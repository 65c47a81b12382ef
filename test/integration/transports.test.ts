import { join } from 'node:path'
import { expect } from 'chai'
import { Role } from '../../src/gen/node.pb.js'
import { startNode } from '../../src/roles/runtime.js'
import { cleanupTempDirs, tempDir, testConfig } from '../helpers.js'
import type { RunningNode } from '../../src/roles/runtime.js'

describe('transports', function () {
  this.timeout(20_000)
  const nodes: RunningNode[] = []
  after(async () => {
    await Promise.all(nodes.map(async n => { await n.stop() }))
    await cleanupTempDirs()
  })

  it('connects over WebSockets and speaks Cocoon protocols on it', async () => {
    const root = await tempDir()
    const server = await startNode(testConfig('proxy', join(root, 'ws-server'), [], { listen: ['/ip4/127.0.0.1/tcp/0/ws'] }), { logPrefix: 'ws-server' })
    nodes.push(server)
    const wsAddr = server.node.getMultiaddrs().find(ma => ma.toString().includes('/ws/'))
    expect(wsAddr, 'a /ws listen address').to.not.equal(undefined)
    const dialer = await startNode(testConfig('client', join(root, 'ws-client'), [], { listen: [] }), { logPrefix: 'ws-client' })
    nodes.push(dialer)
    const connection = await dialer.node.dial(wsAddr!, { signal: AbortSignal.timeout(5_000) })
    expect(connection.remoteAddr.toString()).to.include('/ws')
    expect(connection.encryption).to.equal('/noise')
    expect(connection.multiplexer).to.equal('/yamux/1.0.0')
    const info = await dialer.info.fetch(server.peerId)
    expect(info.role).to.equal(Role.PROXY)
  })
})

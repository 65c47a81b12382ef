import { expect } from 'chai'
import { Role } from '../../src/gen/node.pb.js'
import { PROXIES_SEEN_MAX, ProxyConfirmations } from '../../src/roles/worker/proxy-confirmations.js'

describe('a worker\'s count of the proxies that challenged it', () => {
  it('counts a known proxy\'s challenge at once, and an unknown challenger once its record says proxy', () => {
    const confirmed: string[] = []
    const c = new ProxyConfirmations(id => confirmed.push(id))
    c.peerUpdated({ peerId: 'p1', role: Role.PROXY })
    c.challengedBy('p1', Role.PROXY)
    expect(confirmed).to.deep.equal(['p1'])
    // the challenge arrives before the challenger's /cocoon/info
    c.challengedBy('p2', undefined)
    expect(confirmed).to.deep.equal(['p1'])
    c.peerUpdated({ peerId: 'p2', role: Role.PROXY })
    expect(confirmed).to.deep.equal(['p1', 'p2'])
    // counted once: a later update of the same record confirms nothing more
    c.peerUpdated({ peerId: 'p2', role: Role.PROXY })
    expect(confirmed).to.deep.equal(['p1', 'p2'])
    // a challenger that turns out not to be a proxy is never counted
    c.challengedBy('w1', undefined)
    c.peerUpdated({ peerId: 'w1', role: Role.WORKER })
    c.challengedBy('c1', Role.CLIENT)
    expect(confirmed).to.deep.equal(['p1', 'p2'])
    expect(c.known).to.equal(2)
  })

  it('remembers proxies after the directory forgets them, up to a bound', () => {
    const c = new ProxyConfirmations(() => {})
    for (let i = 0; i < PROXIES_SEEN_MAX + 10; i++) c.peerUpdated({ peerId: `p${i}`, role: Role.PROXY })
    c.peerUpdated({ peerId: 'w', role: Role.WORKER })
    expect(c.known).to.equal(PROXIES_SEEN_MAX)
    // unidentified challengers are bounded too: a flood of them is not kept
    const confirmed: string[] = []
    const d = new ProxyConfirmations(id => confirmed.push(id))
    for (let i = 0; i < PROXIES_SEEN_MAX + 10; i++) d.challengedBy(`x${i}`, undefined)
    d.peerUpdated({ peerId: `x${PROXIES_SEEN_MAX + 5}`, role: Role.PROXY })
    expect(confirmed).to.deep.equal([])
    d.peerUpdated({ peerId: 'x0', role: Role.PROXY })
    expect(confirmed).to.deep.equal(['x0'])
  })
})

import { expect } from 'chai'
import { x25519 } from '@noble/curves/ed25519.js'
import { SealError } from '../../src/errors.js'
import { openRequest, sealRequest, useSealPrimitives } from '../../src/tee/seal.js'
import { nodeSealPrimitives } from '../../src/tee/seal-node.js'
import { portableSealPrimitives } from '../../src/tee/seal-portable.js'
import type { SealPrimitives } from '../../src/tee/seal-primitives.js'

const PRIMITIVES: Array<[string, SealPrimitives]> = [['OpenSSL (Node)', nodeSealPrimitives], ['@noble (portable, browsers)', portableSealPrimitives]]

for (const [name, primitives] of PRIMITIVES) describe(`job sealing with ${name} primitives`, () => {
  before(() => { useSealPrimitives(primitives) })
  after(() => { useSealPrimitives(nodeSealPrimitives) })

  const workerPrivate = x25519.utils.randomSecretKey()
  const workerPublic = x25519.getPublicKey(workerPrivate)
  const context = new TextEncoder().encode('cocoon/job/0123')
  const aad = new TextEncoder().encode('header')
  const body = new TextEncoder().encode('{"messages":[{"role":"user","content":"secret"}]}')

  it('opens a request sealed to the worker key and streams responses back in order', () => {
    const { sealed, opener } = sealRequest(workerPublic, body, context, aad)
    expect(Buffer.from(sealed.ciphertext).includes(Buffer.from('secret'))).to.equal(false)
    const { plaintext, sealer } = openRequest(workerPrivate, workerPublic, sealed, context, aad)
    expect(Buffer.from(plaintext).toString()).to.equal(Buffer.from(body).toString())
    for (let seq = 0; seq < 3; seq++) {
      const chunk = sealer.seal(seq, new TextEncoder().encode(`chunk ${seq}`))
      expect(Buffer.from(opener.open(seq, chunk)).toString()).to.equal(`chunk ${seq}`)
    }
  })

  it('detects a tampered request, another header, another job and another key', () => {
    const { sealed } = sealRequest(workerPublic, body, context, aad)
    const tampered = { ...sealed, ciphertext: Uint8Array.from(sealed.ciphertext, (b, i) => i === 5 ? b ^ 1 : b) }
    expect(() => openRequest(workerPrivate, workerPublic, tampered, context, aad)).to.throw(SealError, /authentication/)
    expect(() => openRequest(workerPrivate, workerPublic, sealed, context, new TextEncoder().encode('other header'))).to.throw(SealError)
    expect(() => openRequest(workerPrivate, workerPublic, sealed, new TextEncoder().encode('cocoon/job/other'), aad)).to.throw(SealError)
    const other = x25519.utils.randomSecretKey()
    expect(() => openRequest(other, x25519.getPublicKey(other), sealed, context, aad)).to.throw(SealError)
  })

  it('detects a tampered, replayed, reordered or dropped response chunk', () => {
    const { sealed, opener } = sealRequest(workerPublic, body, context, aad)
    const { sealer } = openRequest(workerPrivate, workerPublic, sealed, context, aad)
    const c0 = sealer.seal(0, new TextEncoder().encode('zero'))
    const c1 = sealer.seal(1, new TextEncoder().encode('one'))
    const c2 = sealer.seal(2, new TextEncoder().encode('two'))
    expect(() => opener.open(1, c1)).to.throw(SealError, /expected/)
    expect(() => opener.open(0, Uint8Array.from(c0, (b, i) => i === 0 ? b ^ 0x80 : b))).to.throw(SealError, /authentication/)
    opener.open(0, c0)
    expect(() => opener.open(0, c0)).to.throw(SealError)
    expect(() => opener.open(1, c2)).to.throw(SealError, /authentication/)
    expect(Buffer.from(opener.open(1, c1)).toString()).to.equal('one')
  })

  it('authenticates the clear data a response chunk travels with (the token count a proxy bills by)', () => {
    const { sealed, opener } = sealRequest(workerPublic, body, context, aad)
    const { sealer } = openRequest(workerPrivate, workerPublic, sealed, context, aad)
    const claim = (n: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, n); return b }
    const c0 = sealer.seal(0, new TextEncoder().encode('zero'), claim(3))
    expect(() => opener.open(0, c0, claim(30)), 'an inflated count').to.throw(SealError, /authentication/)
    expect(() => opener.open(0, c0), 'a stripped count').to.throw(SealError, /authentication/)
    expect(Buffer.from(opener.open(0, c0, claim(3))).toString()).to.equal('zero')
  })

  it('refuses keys that are not X25519 points or are low-order', () => {
    expect(() => sealRequest(new Uint8Array(31), body, context, aad)).to.throw(SealError, /32 bytes/)
    expect(() => sealRequest(new Uint8Array(32), body, context, aad)).to.throw(SealError, /low-order/)
  })
})

describe('job sealing across implementations', () => {
  after(() => { useSealPrimitives(nodeSealPrimitives) })

  it('a browser client and a Node worker understand each other both ways, with the same bytes', () => {
    const workerPrivate = x25519.utils.randomSecretKey()
    const workerPublic = x25519.getPublicKey(workerPrivate)
    const context = new TextEncoder().encode('cocoon/job/0123')
    const aad = new TextEncoder().encode('header')
    const body = new TextEncoder().encode('{"messages":[]}')
    for (const [sealWith, openWith] of [[portableSealPrimitives, nodeSealPrimitives], [nodeSealPrimitives, portableSealPrimitives]]) {
      useSealPrimitives(sealWith)
      const { sealed, opener } = sealRequest(workerPublic, body, context, aad)
      useSealPrimitives(openWith)
      const { plaintext, sealer } = openRequest(workerPrivate, workerPublic, sealed, context, aad)
      expect(new TextDecoder().decode(plaintext)).to.equal('{"messages":[]}')
      const chunk = sealer.seal(0, new TextEncoder().encode('hello'), aad)
      useSealPrimitives(sealWith)
      expect(new TextDecoder().decode(opener.open(0, chunk, aad))).to.equal('hello')
    }
    // the primitives agree byte for byte
    const key = new Uint8Array(32).fill(1)
    const nonce = new Uint8Array(12).fill(2)
    expect(Buffer.from(portableSealPrimitives.seal(key, nonce, body, aad)).equals(Buffer.from(nodeSealPrimitives.seal(key, nonce, body, aad)))).to.equal(true)
    // an agreement made on one side opens on the other, and the digests match
    const worker = x25519.utils.randomSecretKey()
    const workerKey = x25519.getPublicKey(worker)
    for (const [made, checked] of [[portableSealPrimitives, nodeSealPrimitives], [nodeSealPrimitives, portableSealPrimitives]]) {
      const { enc, shared } = made.ephemeralAgreement(workerKey, 'the job key')
      expect(Buffer.from(checked.x25519(worker, enc, 'the ephemeral key')).equals(Buffer.from(shared))).to.equal(true)
    }
    expect(Buffer.from(portableSealPrimitives.sha256(body)).equals(Buffer.from(nodeSealPrimitives.sha256(body)))).to.equal(true)
  })
})

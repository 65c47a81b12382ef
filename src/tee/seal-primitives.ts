/**
 * The primitives the seal is made of. The portable ones (`@noble/*`) run
 * anywhere, browsers included; on Node, `seal-node.ts` puts OpenSSL's in
 * their place (X25519 about 25 times faster), with the same bytes on the wire.
 */
export interface SealPrimitives {
  /**
   * A fresh ephemeral X25519 key agreed with `recipient`: its public key
   * (`enc`, sent in clear) and the shared secret; the private key never
   * leaves. Throws SealError (naming `what`) for a recipient key that is not
   * a valid public key.
   */
  ephemeralAgreement(recipient: Uint8Array, what: string): { enc: Uint8Array, shared: Uint8Array }
  /** The shared secret of `privateKey` and `publicKey`; throws SealError (naming `what`) for a key that is not a valid public key. */
  x25519(privateKey: Uint8Array, publicKey: Uint8Array, what: string): Uint8Array
  hkdfSha256(ikm: Uint8Array, salt: Uint8Array, info: Uint8Array, length: number): Uint8Array
  /** ChaCha20-Poly1305: the ciphertext with its 16-byte tag appended. */
  seal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Uint8Array
  /** The plaintext, or null when the tag does not verify. */
  open(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, aad: Uint8Array): Uint8Array | null
  sha256(bytes: Uint8Array): Uint8Array
}

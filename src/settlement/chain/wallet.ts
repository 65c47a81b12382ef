/**
 * The node's TON wallet: a WalletContractV5R1 keyed from a 24-word mnemonic
 * kept in a secret file (mode 0600, refused when other users can read it;
 * the same rules as the node identity, src/p2p/secret-file.ts). The words are
 * never logged nor put in an error message.
 *
 * Sends go through `walletSender`, which is `wallet.sender(provider, secretKey)`
 * of @ton/ton with two differences: the transfer's valid-until is taken from
 * the chain's clock (a devnet's clock runs ahead of the wall clock after
 * `advanceTime`, and a wallet refuses a transfer that expired by its clock),
 * and IGNORE_ERRORS is always set, so a transfer the wallet cannot pay is
 * dropped by the wallet (seqno advances, nothing is sent) instead of failing
 * its action phase, which would leave the external message replayable.
 */
import { dirname } from 'node:path'
import { internal, SendMode } from '@ton/core'
import { mnemonicNew, mnemonicToPrivateKey, mnemonicValidate } from '@ton/crypto'
import { WalletContractV5R1 } from '@ton/ton'
import { ConfigError, IdentityError } from '../../errors.js'
import { createSecretFile, readSecretFile } from '../../ops/secret-file.js'
import { CHAIN_NETWORK_IDS } from '../types.js'
import type { Cell, ContractProvider, Sender, SenderArguments } from '@ton/core'
import type { KeyPair } from '@ton/crypto'
import type { ChainName } from '../types.js'

export const MNEMONIC_FILE = 'wallet.mnemonic'
export const MNEMONIC_WORDS = 24

/** How long a signed transfer stays valid at most, seconds of chain time. */
export const TRANSFER_VALID_S = 120

/**
 * The key pair of the mnemonic in `path`. When the file is missing it is
 * created with new words if `create` is set (devnet), else ConfigError (a
 * testnet or mainnet wallet is never made up). `key` names the setting in
 * errors.
 */
export async function loadWalletKey (path: string, opts: { create: boolean, key?: string }): Promise<KeyPair> {
  const key = opts.key ?? 'chain.mnemonicFile'
  let words = await readWords(path, key)
  if (words == null) {
    if (!opts.create) throw new ConfigError(key, `${path} does not exist; it must hold the wallet's ${MNEMONIC_WORDS}-word mnemonic (mode 0600)`)
    const fresh = await mnemonicNew(MNEMONIC_WORDS)
    try {
      await createSecretFile(dirname(path), path, new TextEncoder().encode(fresh.join(' ') + '\n'))
    } catch (err) {
      throw asConfigError(key, err)
    }
    // another process may have created it first: the file wins
    words = await readWords(path, key)
    if (words == null) throw new ConfigError(key, `${path} vanished right after it was created`)
  }
  return await mnemonicToPrivateKey(words)
}

async function readWords (path: string, key: string): Promise<string[] | undefined> {
  let bytes: Uint8Array | undefined
  try {
    bytes = await readSecretFile(path)
  } catch (err) {
    throw asConfigError(key, err)
  }
  if (bytes == null) return undefined
  const words = new TextDecoder().decode(bytes).trim().split(/\s+/).filter(w => w !== '')
  if (words.length !== MNEMONIC_WORDS) throw new ConfigError(key, `${path} must hold a ${MNEMONIC_WORDS}-word TON mnemonic; it holds ${words.length} words`)
  if (!(await mnemonicValidate(words))) throw new ConfigError(key, `${path} does not hold a valid TON mnemonic (a word is misspelt, or it is not a TON wallet mnemonic)`)
  return words
}

function asConfigError (key: string, err: unknown): ConfigError {
  if (err instanceof IdentityError) return new ConfigError(key, `wallet mnemonic ${err.message.replace(/^identity /, '')}`, { cause: err })
  return new ConfigError(key, `wallet mnemonic: ${(err as Error).message}`, { cause: err })
}

/**
 * The V5R1 wallet of `publicKey` on `chain`. The wallet id carries the
 * chain's network id (mainnet -239, testnet -3, the devnet its own), so a
 * transfer signed for one chain can never be replayed on another, even with
 * the same mnemonic.
 */
export function walletContract (chain: ChainName, publicKey: Buffer): WalletContractV5R1 {
  return WalletContractV5R1.create({
    publicKey,
    walletId: { networkGlobalId: CHAIN_NETWORK_IDS[chain], context: { workchain: 0, walletVersion: 'v5r1', subwalletNumber: 0 } }
  })
}

/** What `walletSender` sent last: the signed transfer (the wallet transaction's external body). */
export interface SentTransfer {
  transfer: Cell
  seqno: number
  /** chain time after which the wallet refuses it */
  validUntil: number
  to: SenderArguments['to']
  value: bigint
}

/**
 * A Sender over `wallet` (see the file comment). `now` is chain time; a
 * transfer is valid for `validForS` seconds of it (at most TRANSFER_VALID_S).
 * `onSent` sees each signed transfer before it is handed to the provider.
 */
export function walletSender (wallet: WalletContractV5R1, provider: ContractProvider, secretKey: Buffer, now: () => Promise<number>, onSent?: (sent: SentTransfer) => void, validForS = TRANSFER_VALID_S): Sender {
  return {
    address: wallet.address,
    send: async (args: SenderArguments) => {
      const seqno = await wallet.getSeqno(provider)
      const validUntil = (await now()) + Math.min(Math.max(1, Math.floor(validForS)), TRANSFER_VALID_S)
      const transfer = wallet.createTransfer({
        seqno,
        secretKey,
        timeout: validUntil,
        sendMode: (args.sendMode ?? SendMode.PAY_GAS_SEPARATELY) | SendMode.IGNORE_ERRORS,
        messages: [internal({ to: args.to, value: args.value, init: args.init, body: args.body, bounce: args.bounce })]
      })
      onSent?.({ transfer, seqno, validUntil, to: args.to, value: args.value })
      await wallet.send(provider, transfer)
    }
  }
}

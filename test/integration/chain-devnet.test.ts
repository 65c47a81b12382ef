/**
 * Chain adapters end to end on the devnet: the in-process DevnetAdapter, and
 * TonClientAdapter (the testnet/mainnet adapter) against the devnet server on
 * 127.0.0.1:0 — the same channel lifecycle through both: wallets from the
 * faucet, open and top up, a cooperative close that pays the payee exactly
 * the cumulative, a disputed unilateral close over an advanced clock, refused
 * operations as ChainError with the contract's exit code, and the chain
 * surviving a restart on the same data dir.
 */
import { randomBytes } from 'node:crypto'
import { chmod, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { Address, beginCell, external, storeMessage, toNano } from '@ton/core'
import { keyPairFromSeed, mnemonicNew, sign } from '@ton/crypto'
import { ChannelExitCodes, CLOSE_RESERVE, OPERATION_VALUE, stateToSign } from '../../contracts/payment-channel.js'
import { ChainError, ConfigError } from '../../src/errors.js'
import { CHAIN_NETWORK_IDS } from '../../src/settlement/types.js'
import {
  createChainAdapter, Devnet, DevnetAdapter, devnetAccess, DevnetServerClient, loadWalletKey, startDevnetServer, TonClientAdapter,
  WalletChainAdapter, walletContract
} from '../../src/settlement/chain/index.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import type { KeyPair } from '@ton/crypto'
import type { Transaction } from '@ton/core'
import type { PaymentChannelConfig, SignatureTag, SignedChannelState } from '../../contracts/payment-channel.js'
import type { ChainAdapter } from '../../src/settlement/types.js'
import type { DevnetServer } from '../../src/settlement/chain/index.js'

const WINDOW_S = 600

/** What a flow needs besides the two adapters: the devnet-only extras and a transaction reader. */
interface Env {
  payer: ChainAdapter
  payee: ChainAdapter
  fund: (address: string, amount: bigint) => Promise<void>
  advanceTime: (seconds: number) => Promise<number>
  transactions: (address: string) => Promise<Transaction[]>
}

interface Parties { payerKeys: KeyPair, payeeKeys: KeyPair }

function config (env: Env, keys: Parties, channelId: bigint): PaymentChannelConfig {
  return {
    networkId: env.payer.networkId,
    channelId,
    disputeWindowS: WINDOW_S,
    payerKey: keys.payerKeys.publicKey,
    payeeKey: keys.payeeKeys.publicKey,
    payer: Address.parse(addressOf(env.payer)),
    payee: Address.parse(addressOf(env.payee))
  }
}

function addressOf (a: ChainAdapter): string {
  return (a as DevnetAdapter | TonClientAdapter).address
}

function signed (keys: Parties, channel: string, cfg: PaymentChannelConfig, tag: SignatureTag, seqno: bigint, cumulative: bigint): SignedChannelState {
  const hash = stateToSign(tag, { address: Address.parse(channel), networkId: cfg.networkId, channelId: cfg.channelId }, { seqno, cumulative }).hash()
  return { seqno, cumulative, payerSignature: sign(hash, keys.payerKeys.secretKey), payeeSignature: sign(hash, keys.payeeKeys.secretKey) }
}

/** The values `address` received from `from` (bounces excluded), oldest first. */
async function receivedFrom (env: Env, address: string, from: string): Promise<bigint[]> {
  const src = Address.parse(from)
  return (await env.transactions(address))
    .filter(tx => tx.inMessage?.info.type === 'internal' && !tx.inMessage.info.bounced && tx.inMessage.info.src.equals(src))
    .map(tx => tx.inMessage?.info.type === 'internal' ? tx.inMessage.info.value.coins : 0n)
    .reverse()
}

async function exitCodeOf (promise: Promise<unknown>): Promise<number | null> {
  const err = await promise.then(() => undefined, (e: unknown) => e)
  expect(err, 'expected a ChainError').to.be.instanceOf(ChainError)
  return (err as ChainError).exitCode
}

function within (value: bigint, lo: bigint, hi: bigint, what: string): void {
  expect(value >= lo && value <= hi, `${what}: ${value} not within [${lo}, ${hi}]`).to.equal(true)
}

/** The lifecycle tests, run against each adapter. */
function lifecycle (setup: () => Promise<{ env: Env, restart: () => Promise<Env> }>): void {
  let env: Env
  let restart: () => Promise<Env>
  const keys: Parties = { payerKeys: keyPairFromSeed(randomBytes(32)), payeeKeys: keyPairFromSeed(randomBytes(32)) }
  let cooperative = ''

  before(async () => {
    ({ env, restart } = await setup())
  })

  it('funds fresh wallets from the faucet; a wallet is deployed by its first send', async () => {
    const before = await env.payer.wallet()
    expect(before).to.deep.equal({ address: addressOf(env.payer), balance: 0n, deployed: false })
    await env.fund(addressOf(env.payer), toNano('50'))
    await env.fund(addressOf(env.payee), toNano('5'))
    expect(await env.payer.wallet()).to.deep.equal({ address: addressOf(env.payer), balance: toNano('50'), deployed: false })
    expect(await env.payee.balanceOf(addressOf(env.payee))).to.equal(toNano('5'))
    expect(await env.payer.balanceOf(`0:${'ab'.repeat(32)}`), 'an account that does not exist').to.equal(0n)
  })

  it('opens a channel, tops it up and closes cooperatively: the payee gets exactly the cumulative', async () => {
    const cfg = config(env, keys, 1n)
    const expected = env.payer.channelAddress(cfg)
    expect(await env.payer.getChannel(expected), 'nothing deployed yet').to.equal(null)
    const { address } = await env.payer.openChannel(cfg, toNano('5'))
    cooperative = address
    expect(address).to.equal(expected)
    expect((await env.payer.wallet()).deployed).to.equal(true)
    let info = await env.payee.getChannel(address)
    expect(info).to.include({ status: 'open', networkId: env.payer.networkId, channelId: 1n, disputeWindowS: WINDOW_S, deposited: toNano('5'), seqno: 0n, cumulative: 0n })
    expect(info?.payer.toRawString()).to.equal(addressOf(env.payer))
    expect(info?.payee.toRawString()).to.equal(addressOf(env.payee))
    within(info?.balance ?? 0n, toNano('5') - toNano('0.01'), toNano('5'), 'the channel holds the deposit less its gas')

    await env.payer.topUp(address, toNano('1'))
    info = await env.payer.getChannel(address)
    expect(info?.deposited).to.equal(toNano('6'))
    const held = info?.balance ?? 0n

    const owed = toNano('2.5')
    const payeeBefore = await env.payee.balanceOf(addressOf(env.payee))
    const payerBefore = await env.payer.balanceOf(addressOf(env.payer))
    await env.payer.cooperativeClose(address, signed(keys, address, cfg, 'cooperative', 4n, owed))
    expect(await receivedFrom(env, addressOf(env.payee), address), 'one payout of exactly the cumulative').to.deep.equal([owed])
    const payeeGain = await env.payee.balanceOf(addressOf(env.payee)) - payeeBefore
    within(payeeGain, owed - toNano('0.005'), owed, 'the payee\'s balance grew by the payout less its wallet\'s receive fee')
    const payerGain = await env.payer.balanceOf(addressOf(env.payer)) - payerBefore
    within(payerGain, held - owed - toNano('0.02'), held - owed, 'the payer got the rest back, less fees')
    info = await env.payer.getChannel(address)
    expect(info).to.include({ status: 'closed', seqno: 4n, cumulative: owed, balance: 0n })
  })

  it('closes alone with a dispute: startClose, a challenge with a newer state, advanceTime, finishClose', async () => {
    const cfg = config(env, keys, 2n)
    const { address } = await env.payer.openChannel(cfg, toNano('4'))
    const startedAt = await env.payer.now()
    await env.payer.startClose(address, signed(keys, address, cfg, 'state', 3n, toNano('1')))
    let info = await env.payee.getChannel(address)
    expect(info).to.include({ status: 'closing', seqno: 3n, cumulative: toNano('1') })
    within(BigInt(info?.closingSince ?? 0), BigInt(startedAt), BigInt(startedAt + 5), 'closingSince is chain time')

    expect(await exitCodeOf(env.payee.finishClose(address)), 'the window is still open').to.equal(ChannelExitCodes.windowOpen)
    expect(await exitCodeOf(env.payee.challenge(address, signed(keys, address, cfg, 'state', 3n, toNano('3')))), 'the same seqno').to.equal(ChannelExitCodes.staleState)
    await env.payee.challenge(address, signed(keys, address, cfg, 'state', 9n, toNano('3')))
    info = await env.payee.getChannel(address)
    expect(info).to.include({ status: 'closing', seqno: 9n, cumulative: toNano('3') })

    const now = await env.advanceTime(WINDOW_S)
    expect(now).to.be.at.least(startedAt + WINDOW_S)
    expect(await env.payee.now()).to.be.at.least(startedAt + WINDOW_S)
    expect(await exitCodeOf(env.payee.challenge(address, signed(keys, address, cfg, 'state', 10n, toNano('3.5')))), 'too late').to.equal(ChannelExitCodes.windowOver)
    await env.payee.finishClose(address)
    const payouts = await receivedFrom(env, addressOf(env.payee), address)
    expect(payouts.filter(v => v >= toNano('1')), 'the payee gets what the newest state says').to.deep.equal([toNano('3')])
    expect((await env.payer.getChannel(address))?.status).to.equal('closed')
  })

  it('throws ChainError with the contract\'s exit code when the channel refuses an operation', async () => {
    const cfg = config(env, keys, 3n)
    const { address } = await env.payer.openChannel(cfg, toNano('2'))
    expect(await exitCodeOf(env.payee.topUp(address, toNano('1'))), 'only the payer tops up').to.equal(ChannelExitCodes.notPayer)
    expect(await exitCodeOf(env.payee.cooperativeClose(address, signed(keys, address, cfg, 'state', 1n, toNano('1')))), 'an ordinary state is no cooperative close').to.equal(ChannelExitCodes.badPayerSignature)
    const { balance } = (await env.payer.getChannel(address))!
    expect(await exitCodeOf(env.payee.cooperativeClose(address, signed(keys, address, cfg, 'cooperative', 1n, balance - CLOSE_RESERVE + 1n)))).to.equal(ChannelExitCodes.overspent)
    expect(await exitCodeOf(env.payer.challenge(address, signed(keys, address, cfg, 'state', 1n, 1n))), 'not closing').to.equal(ChannelExitCodes.notClosing)
    expect(await exitCodeOf(env.payer.finishClose(cooperative)), 'closed already').to.equal(ChannelExitCodes.closed)
    expect(await exitCodeOf(env.payer.openChannel(cfg, toNano('1'))), 'deployed already: refused before sending').to.equal(null)
    expect(await exitCodeOf(env.payer.topUp(address, toNano('1000'))), 'more than the wallet holds: refused before sending').to.equal(null)
    expect((await env.payer.getChannel(address))?.status, 'nothing refused changed the channel').to.equal('open')
  })

  it('estimates each operation\'s fees', async () => {
    for (const op of ['open', 'topUp', 'cooperativeClose', 'startClose', 'challenge', 'finishClose'] as const) {
      const fee = await env.payer.estimateFee(op)
      expect(fee.attachedNanoTon, op).to.equal(op === 'open' || op === 'topUp' ? 0n : OPERATION_VALUE)
      within(fee.feesNanoTon, toNano('0.002'), toNano('0.03'), `${op} fees`)
    }
  })

  it('keeps wallets, channels and time across a restart on the same data dir', async () => {
    const channel = (await env.payer.getChannel(cooperative))!
    const balance = await env.payer.balanceOf(addressOf(env.payer))
    const now = await env.payer.now()
    env = await restart()
    expect(await env.payer.balanceOf(addressOf(env.payer))).to.equal(balance)
    const again = (await env.payee.getChannel(cooperative))!
    expect(again).to.include({ status: channel.status, seqno: channel.seqno, cumulative: channel.cumulative, deposited: channel.deposited })
    expect(await env.payer.now(), 'the clock does not go back').to.be.at.least(now)
    // and the chain still runs: a new channel after the restart
    const cfg = config(env, keys, 4n)
    const { address } = await env.payer.openChannel(cfg, toNano('1'))
    expect((await env.payee.getChannel(address))?.status).to.equal('open')
  })
}

describe('chain adapter: in-process devnet', function () {
  this.timeout(30_000)
  let dir: string
  let devnet: Devnet
  let adapters: DevnetAdapter[] = []

  async function open (): Promise<Env> {
    devnet = await Devnet.open(dir)
    adapters = [
      await DevnetAdapter.open({ devnet, mnemonicFile: join(dir, 'payer.mnemonic') }),
      await DevnetAdapter.open({ devnet, mnemonicFile: join(dir, 'payee.mnemonic') })
    ]
    return {
      payer: adapters[0],
      payee: adapters[1],
      fund: async (address, amount) => { await devnet.fund(Address.parse(address), amount) },
      advanceTime: async s => await devnet.advanceTime(s),
      transactions: async address => devnet.transactions(Address.parse(address), 100)
    }
  }
  async function shut (): Promise<void> {
    for (const a of adapters) await a.close()
    await devnet?.close()
  }

  before(async () => { dir = await tempDir('cocoon-chain-') })
  after(async () => {
    await shut()
    await cleanupTempDirs()
  })

  lifecycle(async () => ({ env: await open(), restart: async () => { await shut(); return await open() } }))

  it('keeps the mnemonic in a 0600 file and refuses one other users can read', async () => {
    const path = join(dir, 'payer.mnemonic')
    expect((await stat(path)).mode & 0o777).to.equal(0o600)
    expect((await readFile(path, 'utf8')).trim().split(/\s+/)).to.have.length(24)
    const leaky = join(dir, 'leaky.mnemonic')
    const secret = await mnemonicNew(24)
    await writeFile(leaky, secret.join(' ') + '\n', { mode: 0o644 })
    await chmod(leaky, 0o644)
    const err = await DevnetAdapter.open({ devnet, mnemonicFile: leaky }).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ConfigError)
    expect((err as Error).message).to.match(/readable by other users/)
    for (let i = 0; i + 2 < secret.length; i++) expect((err as Error).message, 'never the words').to.not.include(secret.slice(i, i + 3).join(' '))
  })

  it('bounds every wait: a transaction that never shows up is a ChainError after the timeout', async () => {
    const keys = await loadWalletKey(join(dir, 'payer.mnemonic'), { create: false })
    const blind = { ...devnetAccess(devnet), transactions: async () => [] }
    const adapter = new WalletChainAdapter('devnet', blind, keys, { timeoutMs: 300, pollIntervalMs: 20 })
    const started = performance.now()
    const err = await adapter.openChannel(config({ payer: adapter, payee: adapters[1] } as unknown as Env, { payerKeys: keys, payeeKeys: keys }, 99n), toNano('1')).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ChainError)
    expect((err as Error).message).to.match(/timed out after 300 ms waiting for the wallet's transaction/)
    expect(performance.now() - started).to.be.below(3_000)
  })

  it('lets one process at a time own a devnet dir', async () => {
    const err = await Devnet.open(dir).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ChainError)
    expect((err as Error).message).to.match(/in use by process/)
  })
})

describe('chain adapter: TonClient against the devnet server', function () {
  this.timeout(30_000)
  let dir: string
  let devnet: Devnet
  let server: DevnetServer
  let adapters: TonClientAdapter[] = []

  async function open (): Promise<Env> {
    devnet = await Devnet.open(join(dir, 'chain'))
    server = await startDevnetServer({ devnet, host: '127.0.0.1', port: 0 })
    const client = new DevnetServerClient(server.url)
    // through the factory, as a node would, and directly
    const payer = await createChainAdapter({ chain: 'devnet', dataDir: join(dir, 'payer'), endpoint: server.url, pollIntervalMs: 10, timeoutMs: 10_000 }) as TonClientAdapter
    const payee = new TonClientAdapter({ chain: 'devnet', endpoint: server.endpoint, keys: await loadWalletKey(join(dir, 'payee.mnemonic'), { create: true }), httpTimeoutMs: 5_000, wait: { timeoutMs: 10_000, pollIntervalMs: 10 } })
    expect(payer).to.be.instanceOf(TonClientAdapter)
    adapters = [payer, payee]
    return {
      payer,
      payee,
      fund: async (address, amount) => { await client.fund(address, amount) },
      advanceTime: async s => await client.advanceTime(s),
      transactions: async address => await payee.client.getTransactions(Address.parse(address), { limit: 100 })
    }
  }
  async function shut (): Promise<void> {
    for (const a of adapters) await a.close()
    await server?.close()
    await devnet?.close()
  }

  before(async () => { dir = await tempDir('cocoon-chain-server-') })
  after(async () => {
    await shut()
    await cleanupTempDirs()
  })

  lifecycle(async () => ({ env: await open(), restart: async () => { await shut(); return await open() } }))

  it('answers TonClient\'s reads in toncenter\'s shapes', async () => {
    const client = adapters[0].client
    const info = await client.getMasterchainInfo()
    expect(info.latestSeqno).to.be.greaterThan(0)
    const wallet = Address.parse(adapters[0].address)
    const state = await client.getContractState(wallet)
    expect(state.state).to.equal('active')
    expect(state.timestampt).to.be.greaterThan(0)
    const seqno = await client.runMethod(wallet, 'seqno')
    expect(seqno.stack.readNumber()).to.be.greaterThan(0)
    const missing = await client.runMethodWithError(Address.parse(`0:${'cd'.repeat(32)}`), 'seqno')
    expect(missing.exit_code).to.not.equal(0)
    const txs = await client.getTransactions(wallet, { limit: 2 })
    expect(txs).to.have.length(2)
    expect(txs[0].lt > txs[1].lt, 'newest first').to.equal(true)
    const paged = await client.getTransactions(wallet, { limit: 1, lt: txs[1].lt.toString(), hash: txs[1].hash().toString('base64'), inclusive: true })
    expect(paged[0].hash().equals(txs[1].hash())).to.equal(true)
    const raw = await fetch(`${server.url}/api/v2/getAddressBalance?address=${encodeURIComponent(wallet.toString())}`)
    expect(await raw.json()).to.include({ ok: true, result: state.balance.toString() })
    const unknown = await fetch(server.endpoint, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id: '1', jsonrpc: '2.0', method: 'nope', params: {} }) })
    expect(unknown.status).to.equal(404)
    expect(await unknown.json()).to.include({ ok: false })
    // an external message the wallet does not accept (no valid signature) is refused, and nothing changes
    const forged = beginCell().store(storeMessage(external({ to: wallet, body: beginCell().storeUint(0x7369676e, 32).storeUint(0, 200).endCell() }))).endCell()
    const refused = await client.sendFile(forged.toBoc()).then(() => undefined, (e: unknown) => e) as { response?: { status: number, data: { ok: boolean, error: string } } }
    expect(refused?.response?.status).to.equal(500)
    expect(refused?.response?.data.error).to.match(/not accepted/)
    expect((await client.getContractState(wallet)).balance).to.equal(state.balance)
  })
})

describe('createChainAdapter', function () {
  this.timeout(30_000)
  after(cleanupTempDirs)

  async function configErrorKey (promise: Promise<unknown>): Promise<string> {
    const err = await promise.then(() => undefined, (e: unknown) => e)
    expect(err, 'expected a ConfigError').to.be.instanceOf(ConfigError)
    return (err as ConfigError).key
  }

  it('refuses bad settings with a ConfigError naming the key', async () => {
    const dir = await tempDir('cocoon-chain-config-')
    expect(await configErrorKey(createChainAdapter({ chain: 'mainnet', dataDir: dir }))).to.equal('chain.mnemonicFile')
    expect(await configErrorKey(createChainAdapter({ chain: 'testnet', dataDir: dir, mnemonicFile: join(dir, 'missing.mnemonic') }))).to.equal('chain.mnemonicFile')
    expect(await configErrorKey(createChainAdapter({ chain: 'moonnet' as 'devnet', dataDir: dir }))).to.equal('chain.name')
    expect(await configErrorKey(createChainAdapter({ chain: 'devnet', dataDir: dir, endpoint: 'not a url' }))).to.equal('chain.endpoint')
    const words = join(dir, 'words.mnemonic')
    await writeFile(words, (await mnemonicNew(24)).join(' ') + '\n', { mode: 0o600 })
    expect(await configErrorKey(createChainAdapter({ chain: 'mainnet', dataDir: dir, mnemonicFile: words, endpoint: 'http://toncenter.example/api/v2/jsonRPC' }))).to.equal('chain.endpoint')
    expect(await configErrorKey(createChainAdapter({ chain: 'mainnet', dataDir: dir, mnemonicFile: words, timeoutMs: -1 }))).to.equal('chain.timeoutMs')
    const short = join(dir, 'short.mnemonic')
    await writeFile(short, 'one two three\n', { mode: 0o600 })
    expect(await configErrorKey(createChainAdapter({ chain: 'testnet', dataDir: dir, mnemonicFile: short }))).to.equal('chain.mnemonicFile')
  })

  it('builds a mainnet or testnet adapter from an existing mnemonic without touching the network', async () => {
    const dir = await tempDir('cocoon-chain-config-')
    const words = join(dir, 'words.mnemonic')
    await writeFile(words, (await mnemonicNew(24)).join(' ') + '\n', { mode: 0o600 })
    const keys = await loadWalletKey(words, { create: false })
    const mainnet = await createChainAdapter({ chain: 'mainnet', dataDir: dir, mnemonicFile: words, apiKey: 'k3y' }) as TonClientAdapter
    expect(mainnet).to.be.instanceOf(TonClientAdapter)
    expect(mainnet.networkId).to.equal(CHAIN_NETWORK_IDS.mainnet)
    expect(mainnet.endpoint).to.equal('https://toncenter.com/api/v2/jsonRPC')
    expect(mainnet.address).to.equal(walletContract('mainnet', keys.publicKey).address.toRawString())
    const testnet = await createChainAdapter({ chain: 'testnet', dataDir: dir, mnemonicFile: words }) as TonClientAdapter
    expect(testnet.endpoint).to.equal('https://testnet.toncenter.com/api/v2/jsonRPC')
    expect(testnet.address, 'the wallet id carries the network: another address per chain').to.not.equal(mainnet.address)
  })

  it('says when the devnet server does not answer', async () => {
    const dir = await tempDir('cocoon-chain-config-')
    const err = await createChainAdapter({ chain: 'devnet', dataDir: dir, endpoint: 'http://127.0.0.1:9', httpTimeoutMs: 2_000 }).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(ChainError)
    expect((err as Error).message).to.match(/cocoon chain/)
  })
})

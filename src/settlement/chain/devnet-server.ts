/**
 * One devnet for several processes: `cocoon chain` serves a Devnet over HTTP
 * speaking the subset of the toncenter v2 API that TonClient (@ton/ton) uses,
 * so a node on a shared devnet runs the very adapter it runs on testnet and
 * mainnet (TonClientAdapter), only pointed at this server.
 *
 * Endpoints:
 * - POST /api/v2/jsonRPC (also /jsonRPC and /): JSON-RPC `{id, jsonrpc,
 *   method, params}`, as TonClient sends it;
 * - GET /api/v2/<method>?<params> and POST /api/v2/<method> with a JSON body:
 *   the REST form of the same methods.
 * Every answer is `{ok: true, result}` or `{ok: false, error, code}` with
 * that HTTP status (toncenter's shape).
 *
 * Methods: getAddressInformation, getAddressBalance, getAddressState,
 * getWalletInformation, runGetMethod, sendBoc, sendBocReturnHash,
 * estimateFee, getMasterchainInfo, getTransactions; devnet-only extras:
 * devnetFund {address, amount}, devnetAdvanceTime {seconds}, devnetInfo.
 *
 * Differences from toncenter: estimateFee runs the message on a copy of the
 * chain (signatures are checked even with ignore_chksig, destination_fees is
 * empty); a refused external message answers 500 with the emulator's reason;
 * every send is applied before sendBoc answers (one "block" per send).
 */
import { createServer } from 'node:http'
import { Address, external } from '@ton/core'
import { WalletContractV5R1 } from '@ton/ton'
import { ChainError } from '../../errors.js'
import { Devnet } from './devnet.js'
import { address, ApiError, bigintParam, boc, digest, hashParam, parseStackParam, stackItem, stateName, transactionJson } from './devnet-json.js'
import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Largest request body accepted. */
export const DEVNET_SERVER_MAX_BODY = 1024 * 1024

export interface DevnetServer {
  /** base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string
  /** the JSON-RPC endpoint TonClient takes: `${url}/api/v2/jsonRPC` */
  readonly endpoint: string
  readonly devnet: Devnet
  close: () => Promise<void>
}

export interface DevnetServerOptions {
  devnet: Devnet
  /** default 127.0.0.1 */
  host?: string
  /** default 0 (any free port) */
  port?: number
  /** close the devnet with the server (default false) */
  ownsDevnet?: boolean
}


/** Serves `devnet` until `close()`. */
export async function startDevnetServer (opts: DevnetServerOptions): Promise<DevnetServer> {
  const { devnet } = opts
  const api = new DevnetApi(devnet)
  const server: Server = createServer((req, res) => { void handle(api, req, res) })
  server.keepAliveTimeout = 5_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  const url = `http://${host}:${addr.port}`
  let closing: Promise<void> | undefined
  return {
    url,
    endpoint: `${url}/api/v2/jsonRPC`,
    devnet,
    close: async () => {
      closing ??= (async () => {
        await new Promise<void>(resolve => {
          server.close(() => { resolve() })
          server.closeAllConnections()
        })
        if (opts.ownsDevnet === true) await devnet.close()
      })()
      await closing
    }
  }
}

/** Opens the devnet in `dataDir` and serves it (what `cocoon chain` runs); `close()` closes both. */
export async function serveDevnet (opts: { dataDir: string, host?: string, port?: number }): Promise<DevnetServer> {
  const devnet = await Devnet.open(opts.dataDir)
  try {
    return await startDevnetServer({ devnet, host: opts.host, port: opts.port, ownsDevnet: true })
  } catch (err) {
    await devnet.close()
    throw err
  }
}

async function handle (api: DevnetApi, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let id: unknown = '1'
  try {
    const url = new URL(req.url ?? '/', 'http://devnet')
    const path = url.pathname.replace(/\/+$/, '')
    let method: string
    let params: Record<string, unknown>
    if (req.method === 'POST' && (path === '' || path === '/jsonRPC' || path === '/api/v2/jsonRPC')) {
      const body = await readJson(req)
      id = body.id ?? id
      if (typeof body.method !== 'string') throw new ApiError(400, 'a JSON-RPC request needs a "method"')
      method = body.method
      params = (body.params ?? {}) as Record<string, unknown>
    } else if (path.startsWith('/api/v2/') && (req.method === 'GET' || req.method === 'POST')) {
      method = path.slice('/api/v2/'.length)
      params = req.method === 'GET' ? Object.fromEntries(url.searchParams) : await readJson(req)
    } else {
      throw new ApiError(404, `no such endpoint: ${req.method ?? '?'} ${url.pathname}`)
    }
    if (params == null || typeof params !== 'object') throw new ApiError(400, 'params must be an object')
    const result = await api.call(method, params)
    send(res, 200, { ok: true, result, jsonrpc: '2.0', id })
  } catch (err) {
    const status = err instanceof ApiError ? err.status : err instanceof ChainError ? 500 : 500
    send(res, status, { ok: false, error: (err as Error).message ?? String(err), code: status, jsonrpc: '2.0', id })
  }
}

function send (res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) })
  res.end(text)
}

async function readJson (req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > DEVNET_SERVER_MAX_BODY) throw new ApiError(413, `request body over ${DEVNET_SERVER_MAX_BODY} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (size === 0) return {}
  try {
    const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown
    if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object')
    return parsed as Record<string, unknown>
  } catch {
    throw new ApiError(400, 'the request body is not a JSON object')
  }
}

const V5R1_CODE_HASH = WalletContractV5R1.create({ publicKey: Buffer.alloc(32) }).init.code.hash()

/** The toncenter v2 methods over a devnet. */
class DevnetApi {
  constructor (private readonly devnet: Devnet) {}

  async call (method: string, p: Record<string, unknown>): Promise<unknown> {
    switch (method) {
      case 'getAddressInformation': return await this.addressInformation(address(p.address))
      case 'getAddressBalance': return (await this.devnet.account(address(p.address))).balance.toString()
      case 'getAddressState': return stateName((await this.devnet.account(address(p.address))).state)
      case 'getWalletInformation': return await this.walletInformation(address(p.address))
      case 'runGetMethod': return await this.runGetMethod(p)
      case 'sendBoc': {
        await this.devnet.sendExternal(boc(p.boc, 'boc'))
        return { '@type': 'ok', '@extra': '' }
      }
      case 'sendBocReturnHash': {
        const hash = (await this.devnet.sendExternal(boc(p.boc, 'boc'))).toString('base64')
        return { '@type': 'raw.extMessageInfo', hash, hash_norm: hash }
      }
      case 'estimateFee': return await this.estimateFee(p)
      case 'getMasterchainInfo': return {
        '@type': 'blocks.masterchainInfo',
        last: this.blockId(this.devnet.seqno),
        state_root_hash: digest(`state ${this.devnet.seqno}`),
        init: this.blockId(0)
      }
      case 'getTransactions': return this.getTransactions(p)
      case 'devnetFund': {
        const amount = bigintParam(p.amount, 'amount')
        await this.devnet.fund(address(p.address), amount)
        return { '@type': 'ok' }
      }
      case 'devnetAdvanceTime': {
        const seconds = Number(p.seconds)
        if (!Number.isSafeInteger(seconds) || seconds < 0) throw new ApiError(400, 'seconds must be a whole number >= 0')
        return { now: await this.devnet.advanceTime(seconds) }
      }
      case 'devnetInfo': return { now: this.devnet.now(), seqno: this.devnet.seqno, faucet: this.devnet.faucetAddress?.toRawString() ?? null }
      default: throw new ApiError(404, `method ${JSON.stringify(method)} is not served by the cocoon devnet`)
    }
  }

  private blockId (seqno: number): Record<string, unknown> {
    return { '@type': 'ton.blockIdExt', workchain: -1, shard: '-9223372036854775808', seqno, root_hash: digest(`root ${seqno}`), file_hash: digest(`file ${seqno}`) }
  }

  private async addressInformation (addr: Address): Promise<unknown> {
    const a = await this.devnet.account(addr)
    return {
      '@type': 'raw.fullAccountState',
      balance: a.balance.toString(),
      extra_currencies: [],
      code: a.code?.toBoc().toString('base64') ?? '',
      data: a.data?.toBoc().toString('base64') ?? '',
      last_transaction_id: { '@type': 'internal.transactionId', lt: a.lastLt.toString(), hash: a.lastHash.toString('base64') },
      block_id: this.blockId(this.devnet.seqno),
      frozen_hash: '',
      sync_utime: this.devnet.now(),
      state: stateName(a.state)
    }
  }

  private async walletInformation (addr: Address): Promise<unknown> {
    const a = await this.devnet.account(addr)
    const wallet = a.state === 'active' && a.code != null && a.code.hash().equals(V5R1_CODE_HASH)
    const info: Record<string, unknown> = {
      wallet,
      balance: a.balance.toString(),
      account_state: stateName(a.state),
      last_transaction_id: { '@type': 'internal.transactionId', lt: a.lastLt.toString(), hash: a.lastHash.toString('base64') }
    }
    if (wallet) {
      const seqno = await this.devnet.runGetMethod(addr, 'seqno')
      const id = await this.devnet.runGetMethod(addr, 'get_subwallet_id')
      info.wallet_type = 'wallet v5 r1'
      if (seqno.exitCode === 0 && seqno.stack[0]?.type === 'int') info.seqno = Number(seqno.stack[0].value)
      if (id.exitCode === 0 && id.stack[0]?.type === 'int') info.wallet_id = Number(id.stack[0].value)
    }
    return info
  }

  private async runGetMethod (p: Record<string, unknown>): Promise<unknown> {
    const addr = address(p.address)
    const method = typeof p.method === 'number' ? p.method : typeof p.method === 'string' && p.method !== '' ? p.method : null
    if (method == null) throw new ApiError(400, 'method must be a getter name or id')
    const stack = typeof p.stack === 'string' ? JSON.parse(p.stack) as unknown : p.stack ?? []
    if (!Array.isArray(stack)) throw new ApiError(400, 'stack must be an array')
    const r = await this.devnet.runGetMethod(addr, method, stack.map(parseStackParam))
    return { '@type': 'smc.runResult', gas_used: Number(r.gasUsed), exit_code: r.exitCode, stack: r.stack.map(stackItem) }
  }

  private async estimateFee (p: Record<string, unknown>): Promise<unknown> {
    const addr = address(p.address)
    const body = boc(p.body, 'body')
    const code = p.init_code == null || p.init_code === '' ? null : boc(p.init_code, 'init_code')
    const data = p.init_data == null || p.init_data === '' ? null : boc(p.init_data, 'init_data')
    const f = await this.devnet.emulateExternal(external({ to: addr, init: code != null && data != null ? { code, data } : null, body }))
    return {
      '@type': 'query.fees',
      source_fees: { '@type': 'fees', in_fwd_fee: Number(f.inFwdFee), storage_fee: Number(f.storageFee), gas_fee: Number(f.gasFee), fwd_fee: Number(f.fwdFee) },
      destination_fees: []
    }
  }

  private getTransactions (p: Record<string, unknown>): unknown {
    const addr = address(p.address)
    const limit = p.limit == null ? 10 : Number(p.limit)
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw new ApiError(400, 'limit must be within 1..1000')
    const fromLt = p.lt == null || p.lt === '' ? undefined : bigintParam(p.lt, 'lt')
    const toLt = p.to_lt == null || p.to_lt === '' || p.to_lt === '0' || p.to_lt === 0 ? undefined : bigintParam(p.to_lt, 'to_lt')
    const fromHash = p.hash == null || p.hash === '' ? undefined : hashParam(p.hash)
    return this.devnet.transactions(addr, limit, { fromLt, fromHash, toLt }).map(tx => transactionJson(addr, tx))
  }
}

/** The devnet-only extras, for tests and `cocoon` commands talking to a devnet server. */
export class DevnetServerClient {
  readonly endpoint: string
  private readonly timeoutMs: number

  /** `url` is the server's base URL or its JSON-RPC endpoint. */
  constructor (url: string, opts: { timeoutMs?: number } = {}) {
    this.endpoint = /\/jsonRPC\/?$/.test(url) ? url : `${url.replace(/\/+$/, '')}/api/v2/jsonRPC`
    this.timeoutMs = opts.timeoutMs ?? 10_000
  }

  async fund (address: string, amount: bigint): Promise<void> {
    await this.call('devnetFund', { address, amount: amount.toString() })
  }

  /** Moves the devnet's clock forward; returns its new time. */
  async advanceTime (seconds: number): Promise<number> {
    return (await this.call('devnetAdvanceTime', { seconds }) as { now: number }).now
  }

  async info (): Promise<{ now: number, seqno: number, faucet: string | null }> {
    return await this.call('devnetInfo', {}) as { now: number, seqno: number, faucet: string | null }
  }

  private async call (method: string, params: Record<string, unknown>): Promise<unknown> {
    let res: Response
    try {
      res = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: '1', jsonrpc: '2.0', method, params }),
        signal: AbortSignal.timeout(this.timeoutMs)
      })
    } catch (err) {
      throw new ChainError(`devnet server ${this.endpoint}: ${method} failed (${(err as Error).message}); is \`cocoon chain\` running?`, { cause: err })
    }
    const body = await res.json().catch(() => null) as { ok?: boolean, result?: unknown, error?: string } | null
    if (!res.ok || body?.ok !== true) throw new ChainError(`devnet server ${this.endpoint}: ${method}: ${body?.error ?? `HTTP ${res.status}`}`)
    return body.result
  }
}

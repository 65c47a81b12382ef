/** The devnet server's JSON: request parameters in, accounts, stacks, messages and transactions out, as toncenter's v2 API writes them. */
import { createHash } from 'node:crypto'
import { Address, beginCell, Cell } from '@ton/core'
import type { Message, Transaction, TupleItem } from '@ton/core'

/** A request the API refuses, with its HTTP status. */
export class ApiError extends Error {
  constructor (readonly status: number, message: string) {
    super(message)
  }
}

export function address (v: unknown): Address {
  if (typeof v !== 'string' || v === '') throw new ApiError(400, 'address is required')
  try {
    return Address.parse(v)
  } catch {
    throw new ApiError(400, `invalid address ${JSON.stringify(v)}`)
  }
}

export function boc (v: unknown, name: string): Cell {
  if (typeof v !== 'string' || v === '') throw new ApiError(400, `${name} is required (a base64 BOC)`)
  try {
    return Cell.fromBase64(v)
  } catch {
    throw new ApiError(400, `${name} is not a base64 BOC`)
  }
}

export function bigintParam (v: unknown, name: string): bigint {
  try {
    if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v)
    if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v)
  } catch {}
  throw new ApiError(400, `${name} must be a whole number`)
}

export function hashParam (v: unknown): Buffer {
  if (typeof v !== 'string') throw new ApiError(400, 'hash must be a string')
  if (/^[0-9a-fA-F]{64}$/.test(v)) return Buffer.from(v, 'hex')
  const b = Buffer.from(v, 'base64')
  if (b.length !== 32) throw new ApiError(400, 'hash must be 32 bytes, hex or base64')
  return b
}

export function stateName (s: 'active' | 'uninit' | 'frozen'): string {
  return s === 'uninit' ? 'uninitialized' : s
}

export function digest (s: string): string {
  return createHash('sha256').update(s).digest('base64')
}

/** toncenter's `[type, value]` stack items, as TonClient parses them. */
export function stackItem (item: TupleItem): unknown {
  switch (item.type) {
    case 'int': return ['num', (item.value < 0n ? '-0x' : '0x') + (item.value < 0n ? -item.value : item.value).toString(16)]
    case 'null': return ['null', null]
    case 'cell': return ['cell', { bytes: item.cell.toBoc().toString('base64'), object: {} }]
    case 'slice': return ['slice', { bytes: item.cell.toBoc().toString('base64'), object: {} }]
    case 'builder': return ['builder', { bytes: item.cell.toBoc().toString('base64'), object: {} }]
    case 'tuple': return ['tuple', { '@type': 'tvm.tuple', elements: item.items.map(stackEntry) }]
    default: return ['null', null]
  }
}

/** The tvm.stackEntry* form used inside tuples. */
export function stackEntry (item: TupleItem): unknown {
  switch (item.type) {
    case 'int': return { '@type': 'tvm.stackEntryNumber', number: { '@type': 'tvm.numberDecimal', number: item.value.toString() } }
    case 'cell': return { '@type': 'tvm.stackEntryCell', cell: { '@type': 'tvm.cell', bytes: item.cell.toBoc().toString('base64') } }
    case 'slice': return { '@type': 'tvm.stackEntrySlice', slice: { '@type': 'tvm.slice', bytes: item.cell.toBoc().toString('base64') } }
    case 'builder': return { '@type': 'tvm.stackEntryCell', cell: { '@type': 'tvm.cell', bytes: item.cell.toBoc().toString('base64') } }
    case 'tuple': return { '@type': 'tvm.stackEntryTuple', tuple: { '@type': 'tvm.tuple', elements: item.items.map(stackEntry) } }
    default: return { '@type': 'tvm.stackEntryList', list: { '@type': 'tvm.list', elements: [] } }
  }
}

/** A stack argument as TonClient sends it: ["num", "123"], ["tvm.Cell", b64], ["tvm.Slice", b64], ["tvm.Builder", b64]. */
export function parseStackParam (v: unknown): TupleItem {
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string') throw new ApiError(400, 'a stack item must be [type, value]')
  const [type, value] = v as [string, unknown]
  if (type === 'num' || type === 'number' || type === 'int') {
    const s = String(value)
    try {
      return { type: 'int', value: s.startsWith('-') ? -BigInt(s.slice(1)) : BigInt(s) }
    } catch {
      throw new ApiError(400, `not a number: ${s}`)
    }
  }
  const bytes = typeof value === 'string' ? value : (value as { bytes?: string } | null)?.bytes
  const cell = boc(bytes, 'a stack cell')
  if (type === 'tvm.Cell' || type === 'cell') return { type: 'cell', cell }
  if (type === 'tvm.Slice' || type === 'slice') return { type: 'slice', cell }
  if (type === 'tvm.Builder' || type === 'builder') return { type: 'builder', cell }
  throw new ApiError(400, `unsupported stack item type ${type}`)
}

export function friendly (a: unknown): string {
  return a instanceof Address ? a.toString() : ''
}

export function messageJson (m: Message): Record<string, unknown> {
  const info = m.info
  const internal = info.type === 'internal'
  return {
    '@type': 'raw.message',
    source: info.type === 'external-in' ? '' : friendly(info.src),
    destination: info.type === 'external-out' ? '' : friendly(info.dest),
    value: internal ? info.value.coins.toString() : '0',
    fwd_fee: internal ? info.forwardFee.toString() : '0',
    ihr_fee: internal ? info.ihrFee.toString() : '0',
    created_lt: info.type === 'external-in' ? '0' : info.createdLt.toString(),
    body_hash: m.body.hash().toString('base64'),
    msg_data: {
      '@type': 'msg.dataRaw',
      body: m.body.toBoc().toString('base64'),
      init_state: m.init == null ? '' : beginCell().storeRef(m.init.code ?? Cell.EMPTY).storeRef(m.init.data ?? Cell.EMPTY).endCell().toBoc().toString('base64')
    }
  }
}

export function transactionJson (addr: Address, tx: Transaction): Record<string, unknown> {
  const d = tx.description
  const storage = d.type === 'generic' ? d.storagePhase?.storageFeesCollected ?? 0n : 0n
  return {
    '@type': 'raw.transaction',
    address: { '@type': 'accountAddress', account_address: addr.toString() },
    utime: tx.now,
    data: tx.raw.toBoc().toString('base64'),
    transaction_id: { '@type': 'internal.transactionId', lt: tx.lt.toString(), hash: tx.hash().toString('base64') },
    fee: tx.totalFees.coins.toString(),
    storage_fee: storage.toString(),
    other_fee: (tx.totalFees.coins - storage).toString(),
    in_msg: tx.inMessage == null ? undefined : messageJson(tx.inMessage),
    out_msgs: [...tx.outMessages.values()].map(messageJson)
  }
}

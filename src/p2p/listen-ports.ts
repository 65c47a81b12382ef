/**
 * A node keeps its listen ports across restarts. A listen address with port
 * 0 gets whatever port the system picks on the first start; the port is then
 * stored in the data dir (`listen-ports.json`) and asked for again on every
 * later start, so peers that knew the node's address (a client's peer store,
 * the DHT) reach it again the moment it is back, instead of dialling a dead
 * port until they hear of the new one. When the stored port is taken by
 * something else, the node takes a fresh one and says so.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { writeFileAtomic } from '../ops/atomic-write.js'
import type { Multiaddr } from '@multiformats/multiaddr'

export const LISTEN_PORTS_FILE = 'listen-ports.json'

/** Configured listen address (with port 0) → the port it got. */
type PortMap = Record<string, number>

/** The listen addresses with each port-0 TCP address given the port it had before, where one is stored. */
export async function stickyListen (dataDir: string, listen: string[]): Promise<string[]> {
  const stored = await readPorts(dataDir)
  return listen.map(addr => {
    const port = stored[addr]
    return port == null || !isPortZeroTcp(addr) ? addr : withPort(addr, port)
  })
}

/**
 * Stores the port each port-0 TCP listen address got, read from the
 * addresses the node listens on now (a plain TCP and a WebSocket listener
 * are told apart by the `/ws` at the end).
 */
export async function rememberListenPorts (dataDir: string, listen: string[], listening: Multiaddr[]): Promise<void> {
  const ports: PortMap = {}
  for (const addr of listen) {
    if (!isPortZeroTcp(addr)) continue
    const ws = isWebSocket(addr)
    const match = listening.find(m => isWebSocket(m.toString()) === ws && tcpPort(m) != null && tcpPort(m) !== 0)
    const port = match == null ? undefined : tcpPort(match)
    if (port != null) ports[addr] = port
  }
  const before = await readPorts(dataDir)
  if (JSON.stringify(before) === JSON.stringify(ports)) return
  await writeFileAtomic(join(dataDir, LISTEN_PORTS_FILE), JSON.stringify(ports, null, 2) + '\n', { mode: 0o600 })
}

async function readPorts (dataDir: string): Promise<PortMap> {
  let text: string
  try {
    text = await readFile(join(dataDir, LISTEN_PORTS_FILE), 'utf8')
  } catch {
    return {}
  }
  try {
    const parsed = JSON.parse(text) as unknown
    if (parsed == null || typeof parsed !== 'object' || Array.isArray(parsed)) return {}
    // a hand-edited or damaged file only costs the sticky ports
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536)) as PortMap
  } catch {
    return {}
  }
}

function isPortZeroTcp (addr: string): boolean {
  try {
    return tcpPort(multiaddr(addr)) === 0
  } catch {
    return false
  }
}

function isWebSocket (addr: string): boolean {
  return /\/wss?(\/|$)/.test(addr)
}

function tcpPort (m: Multiaddr): number | undefined {
  const tcp = m.getComponents().find(c => c.name === 'tcp')
  return tcp?.value == null ? undefined : Number(tcp.value)
}

function withPort (addr: string, port: number): string {
  return addr.replace(/\/tcp\/0(?=\/|$)/, `/tcp/${port}`)
}

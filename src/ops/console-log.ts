/**
 * One concise human line per lifecycle event (started, joined, peer count,
 * stopping), on stderr. Protocol-level detail goes through @libp2p/logger
 * instead (DEBUG=cocoon:* or --log-level debug).
 */
import { enable } from '@libp2p/logger'

export const LOG_LEVELS = ['silent', 'error', 'warn', 'info', 'debug', 'trace'] as const
export type LogLevel = typeof LOG_LEVELS[number]

const ORDER: Record<LogLevel, number> = { silent: 0, error: 1, warn: 2, info: 3, debug: 4, trace: 5 }

export interface ConsoleLog {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
}

export function createConsoleLog (level: LogLevel, tag: string, write: (line: string) => void = line => process.stderr.write(line + '\n')): ConsoleLog {
  const at = (min: LogLevel, label: string) => (message: string): void => {
    if (ORDER[level] >= ORDER[min]) write(`${new Date().toISOString()} ${label} [${tag}] ${message}`)
  }
  return { info: at('info', 'INFO '), warn: at('warn', 'WARN '), error: at('error', 'ERROR') }
}

/** Turns on @libp2p/logger namespaces for debug and trace levels. */
export function enableDebugLogs (level: LogLevel): void {
  const fromEnv = process.env.DEBUG
  if (level === 'trace') enable(['cocoon:*', 'libp2p:*', fromEnv].filter(Boolean).join(','))
  else if (level === 'debug') enable(['cocoon:*', '-cocoon:*:trace', fromEnv].filter(Boolean).join(','))
}

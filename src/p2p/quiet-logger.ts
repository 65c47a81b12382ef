/**
 * A libp2p component logger that costs nothing while debug logging is off.
 *
 * libp2p asks its logger for a new scope for every stream it opens or
 * accepts (the muxer's stream, protocol selection, the handler). Each scope
 * from `@libp2p/logger` makes three `debug` instances, and each of those asks
 * whether stderr is a terminal: two system calls (fstat and ioctl) and a few
 * allocations per stream, for logs nobody reads. In a 1 000-node simulation a
 * host process made about 440 such calls a second.
 *
 * With no DEBUG namespaces set (the `debug` package keeps them in
 * `process.env.DEBUG` under Node, and `--log-level debug` sets them before any
 * node starts) every component gets one shared disabled logger. With DEBUG
 * set, loggers come from `prefixLogger` exactly as before, so `DEBUG=libp2p:*`
 * still shows everything.
 */
import { prefixLogger } from '@libp2p/logger'
import type { ComponentLogger, Logger } from '@libp2p/interface'

const noop = (): void => {}

/** Logs nothing; its scopes are itself. */
export const DISABLED_LOGGER: Logger = Object.assign(noop.bind(null), {
  enabled: false,
  error: noop,
  trace: noop,
  newScope: (): Logger => DISABLED_LOGGER
})

/** `prefixLogger(prefix)` while DEBUG names anything, else the disabled logger for every component. */
export function quietPrefixLogger (prefix: string, env: NodeJS.ProcessEnv = process.env): ComponentLogger {
  const inner = prefixLogger(prefix)
  return {
    forComponent (name: string): Logger {
      return (env.DEBUG ?? '') === '' ? DISABLED_LOGGER : inner.forComponent(name)
    }
  }
}

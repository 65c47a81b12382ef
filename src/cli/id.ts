import { parseArgs } from 'node:util'
import { ConfigError } from '../errors.js'
import { checkValue, defaultDataDir } from '../config/load.js'
import { loadOrCreateIdentity } from '../p2p/identity.js'
import type { CliIO } from './io.js'

/** `cocoon id`: create (if needed) and show the identity of a data dir. */
export async function runId (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      role: { type: 'string' },
      network: { type: 'string' },
      'data-dir': { type: 'string' },
      json: { type: 'boolean' }
    },
    strict: true
  })
  const dataDir = resolveDataDir(values, io.env)
  const identity = await loadOrCreateIdentity(dataDir)
  if (values.json === true) {
    io.out(JSON.stringify({ peerId: identity.peerId.toString(), path: identity.path, created: identity.created }))
  } else {
    io.out(identity.peerId.toString())
    io.err(`${identity.created ? 'created' : 'loaded'} ${identity.path}`)
  }
  return 0
}

export function resolveDataDir (values: { role?: string, network?: string, 'data-dir'?: string }, env: NodeJS.ProcessEnv): string {
  if (values['data-dir'] != null) return values['data-dir']
  if (env.COCOON_DATA_DIR != null && env.COCOON_DATA_DIR !== '') return env.COCOON_DATA_DIR
  const role = values.role ?? env.COCOON_ROLE
  if (role == null) throw new ConfigError('role', 'missing; expected --role bootstrap|worker|proxy|client or --data-dir <dir>')
  const validRole = checkValue('role', role)
  const network = checkValue('network', values.network ?? env.COCOON_NETWORK ?? 'local')
  return defaultDataDir(network, validRole, env)
}

/** The node command's flags as a config layer. */
import { basename } from 'node:path'
import { coerce, DEFAULT_MODEL } from '../config/load.js'
import type { RawConfig } from '../config/load.js'

function modelNameFromPath (path: string): string {
  const name = basename(path).replace(/\.gguf$/i, '').replace(/[^A-Za-z0-9._:/+-]/g, '-').slice(0, 128)
  return /^[A-Za-z0-9]/.test(name) ? name : `model-${name}`
}

/** Turns parsed flags into a raw config layer (only the keys that were given). */
export function flagsToConfig (values: Record<string, string | boolean | string[] | undefined>): RawConfig {
  const raw: RawConfig = {}
  if (values.role !== undefined) raw.role = values.role
  if (values.network !== undefined) raw.network = values.network
  if (values['data-dir'] !== undefined) raw.dataDir = values['data-dir']
  if (values.listen !== undefined) raw.listen = values.listen
  if (values.announce !== undefined) raw.announce = values.announce
  if (values.bootstrap !== undefined) raw.bootstrap = values.bootstrap
  if (values['no-default-bootstrap'] === true) raw.useDefaultBootstrap = false
  if (values['log-level'] !== undefined) raw.logLevel = values['log-level']
  const admin: RawConfig = {}
  if (values['admin-port'] !== undefined) admin.port = coerce(values['admin-port'] as string, 'number')
  if (values['no-admin'] === true) admin.enabled = false
  if (Object.keys(admin).length > 0) raw.admin = admin
  if (values.attestation !== undefined) raw.attestation = { provider: values.attestation }
  const worker: RawConfig = {}
  if (values['no-gossip'] === true) worker.gossip = false
  if (values.backend !== undefined) worker.backend = values.backend
  if (values.upstream !== undefined) {
    worker.upstream = { url: values.upstream }
    if (values.backend === undefined) worker.backend = 'openai'
  }
  if (values.model !== undefined) {
    const path = values.model as string
    worker.models = [{ ...DEFAULT_MODEL, name: modelNameFromPath(path), path }]
  }
  if (Object.keys(worker).length > 0) raw.worker = worker
  if (values['api-port'] !== undefined) raw.client = { api: { port: coerce(values['api-port'] as string, 'number') } }
  const settlement: RawConfig = {}
  if (values.settlement === true) settlement.enabled = true
  if (values.chain !== undefined) settlement.chain = values.chain
  if (values['chain-endpoint'] !== undefined) settlement.endpoint = values['chain-endpoint']
  if (values['mnemonic-file'] !== undefined) settlement.mnemonicFile = values['mnemonic-file']
  if (Object.keys(settlement).length > 0) raw.settlement = settlement
  return raw
}

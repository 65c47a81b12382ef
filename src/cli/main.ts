/**
 * The `cocoon` command line. Exit codes: 0 success, 1 runtime failure,
 * 2 bad usage or configuration (with a one-line message naming the problem).
 */
import '../polyfills.js'
import { parseArgs } from 'node:util'
import { CocoonError, ConfigError } from '../errors.js'
import { loadConfig } from '../config/load.js'
import { packageVersion } from '../package-info.js'
import { startNode } from '../roles/runtime.js'
import { runDevnet } from './devnet.js'
import { flagsToConfig } from './flags.js'
import { defaultIO, waitForShutdown } from './io.js'
import { runId } from './id.js'
import { runStatus } from './status.js'
import { runChain, runChannel, runWallet } from './settlement.js'
import type { CliIO } from './io.js'

export const USAGE = `cocoon - a peer-to-peer network for confidential AI inference

Usage:
  cocoon node --role <bootstrap|worker|proxy|client> [options]   run a node
  cocoon devnet [--once] [--workers N]                           run a whole local swarm in one process
  cocoon id [--role R] [--network N] [--data-dir D] [--json]     create or show a node identity
  cocoon status [--role R] [--network N] [--data-dir D] [--admin URL] [--json]
                                                                 ask running nodes for their status
  cocoon wallet [show | faucet [TON]] [--role R] [--data-dir D]  a running node's wallet (faucet: devnet only)
  cocoon wallet create --mnemonic-file F [--chain testnet|mainnet]  new wallet words for a real network (prints the address)
  cocoon channel list | open <peer> | topup <channel> <TON> | pay <channel> <TON> | close <channel> [--force]  [--role R] [--data-dir D]
                                                                 a running node's payment channels
  cocoon chain [--port 8500] [--data-dir D]                      serve one devnet chain to nodes in other processes
  cocoon sim <scenario> [--seed N] [--out DIR]                   run a multi-node simulation (simulations/scenarios/)
  cocoon --version | --help

Node options (flags > COCOON_* environment > --config file > defaults):
  --role <name>             bootstrap, worker, proxy or client            (COCOON_ROLE)
  --network <local|public>  local swarm (default) or the public swarm     (COCOON_NETWORK)
  --config <file>           JSON config file                              (COCOON_CONFIG)
  --data-dir <dir>          identity and state (default ~/.cocoon/<network>/<role>)  (COCOON_DATA_DIR)
  --listen <multiaddr>      listen address, repeatable                    (COCOON_LISTEN, comma-separated)
  --announce <multiaddr>    address to announce instead, repeatable       (COCOON_ANNOUNCE)
  --bootstrap <multiaddr>   bootstrap peer with /p2p/<id>, repeatable     (COCOON_BOOTSTRAP)
  --no-default-bootstrap    use only the --bootstrap peers given          (COCOON_USE_DEFAULT_BOOTSTRAP=false)
  --log-level <level>       silent, error, warn, info, debug, trace       (COCOON_LOG_LEVEL)
  --admin-port <port>       admin endpoint port on 127.0.0.1, 0 = any     (COCOON_ADMIN_PORT)
  --no-admin                do not serve the admin endpoint               (COCOON_ADMIN_ENABLED=false)
  --attestation <kind>      auto (tdx where configfs-tsm exists), tdx or simulated  (COCOON_ATTESTATION_PROVIDER)
  --no-gossip               worker: be found through the DHT only, never announced on gossip
  --backend <kind>          worker: llama (embedded llama.cpp, default), openai (upstream server) or synthetic  (COCOON_BACKEND)
  --model <file.gguf>       worker: serve this GGUF file (llama backend); without it, a generated synthetic test model
  --upstream <url>          worker: OpenAI-compatible upstream such as http://127.0.0.1:8000/v1 (implies --backend openai)  (COCOON_UPSTREAM_URL)
  --api-port <port>         client: port of the OpenAI-compatible API on 127.0.0.1 (default 8400, 0 = any)  (COCOON_API_PORT)
  --settlement              pay and get paid over payment channels        (COCOON_SETTLEMENT=true)
  --chain <name>            devnet (default), testnet or mainnet          (COCOON_CHAIN)
  --chain-endpoint <url>    devnet: a cocoon chain server; testnet/mainnet: a toncenter v2 endpoint  (COCOON_CHAIN_ENDPOINT)
  --mnemonic-file <file>    the wallet's 24 words (mode 0600); required on testnet and mainnet  (COCOON_MNEMONIC_FILE)
Workers' models, prices and accelerators, and attestation policy, are set in the --config file (see README).

Debug logs: DEBUG=cocoon:* (add libp2p:* for the network stack).`

/** Options shared by several commands, parsed strictly: unknown flags are errors. */
const NODE_OPTIONS = {
  role: { type: 'string' },
  network: { type: 'string' },
  config: { type: 'string' },
  'data-dir': { type: 'string' },
  listen: { type: 'string', multiple: true },
  announce: { type: 'string', multiple: true },
  bootstrap: { type: 'string', multiple: true },
  'no-default-bootstrap': { type: 'boolean' },
  'log-level': { type: 'string' },
  'admin-port': { type: 'string' },
  'no-admin': { type: 'boolean' },
  attestation: { type: 'string' },
  'no-gossip': { type: 'boolean' },
  backend: { type: 'string' },
  model: { type: 'string' },
  upstream: { type: 'string' },
  'api-port': { type: 'string' },
  settlement: { type: 'boolean' },
  chain: { type: 'string' },
  'chain-endpoint': { type: 'string' },
  'mnemonic-file': { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

export async function main (argv: string[], io: CliIO = defaultIO): Promise<number> {
  const [command, ...rest] = argv
  try {
    switch (command) {
      case undefined:
      case '--help':
      case '-h':
      case 'help':
        io.out(USAGE)
        return command === undefined ? 2 : 0
      case '--version':
      case '-v':
        io.out(packageVersion())
        return 0
      case 'node':
        return await runNodeCommand(rest, io)
      case 'id':
        return await runId(rest, io)
      case 'status':
        return await runStatus(rest, io)
      case 'devnet':
        return await runDevnet(rest, io)
      case 'wallet':
        return await runWallet(rest, io)
      case 'channel':
        return await runChannel(rest, io)
      case 'chain':
        return await runChain(rest, io)
      case 'sim': {
        // the simulator ships beside the node code, not inside it: loaded only when asked for
        const { simMain } = await import('../../simulations/cli.js')
        return await simMain(rest, io.out)
      }
      default:
        io.err(`cocoon: unknown command ${JSON.stringify(command)}; expected node, devnet, id, status, wallet, channel, chain or sim (see cocoon --help)`)
        return 2
    }
  } catch (err) {
    return reportError(err, io)
  }
}

export function reportError (err: unknown, io: CliIO): number {
  const code = (err as { code?: string }).code ?? ''
  if (err instanceof ConfigError || (err instanceof CocoonError && err.code === 'ERR_IDENTITY')) {
    io.err(`cocoon: ${err.message}`)
    return 2
  }
  if (code.startsWith('ERR_PARSE_ARGS')) {
    io.err(`cocoon: ${(err as Error).message.split('\n')[0]} (see cocoon --help)`)
    return 2
  }
  if (err instanceof CocoonError) {
    io.err(`cocoon: ${err.message}`)
    return 1
  }
  io.err(`cocoon: ${(err as Error).stack ?? String(err)}`)
  return 1
}

/** A model name from a weights file name: `Llama-3.2-1B-Instruct-Q4_K_M.gguf` → `Llama-3.2-1B-Instruct-Q4_K_M`. */
async function runNodeCommand (args: string[], io: CliIO): Promise<number> {
  const { values } = parseArgs({ args, options: NODE_OPTIONS, strict: true, allowPositionals: false })
  if (values.help === true) {
    io.out(USAGE)
    return 0
  }
  const config = await loadConfig({ flags: flagsToConfig(values), env: io.env, configPath: values.config })
  const node = await startNode(config, { consoleWrite: io.err })
  await waitForShutdown(node, io)
  return 0
}

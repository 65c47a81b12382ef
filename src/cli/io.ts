/** Where the command line writes, and how a long-running command ends. */
import type { RunningNode } from '../roles/runtime.js'

export interface CliIO {
  out(line: string): void
  err(line: string): void
  env: NodeJS.ProcessEnv
}

export const defaultIO: CliIO = {
  out: line => { process.stdout.write(line + '\n') },
  err: line => { process.stderr.write(line + '\n') },
  env: process.env
}

/** Resolves once the node has stopped after SIGINT/SIGTERM; a second signal exits at once. */
export async function waitForShutdown (node: Pick<RunningNode, 'stop'>, io: CliIO): Promise<void> {
  await new Promise<void>(resolve => {
    let signals = 0
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++
      if (signals > 1) {
        io.err(`cocoon: ${signal} again, exiting now`)
        process.exit(130)
      }
      node.stop().then(resolve, err => {
        io.err(`cocoon: shutdown failed: ${(err as Error).message}`)
        resolve()
      })
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
  })
}

/**
 * Accelerator discovery: which GPUs (or, failing that, which CPU) a worker
 * serves inference on, so that it can announce its hardware to the network.
 *
 * GPUs are read from `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`,
 * the one interface NVIDIA documents as stable for scripts. Discovery must not
 * stop a worker from starting: a missing, broken, hung or older nvidia-smi
 * leads to a CPU description with the reason in `detail`, never to a throw.
 * An operator can also state the hardware in config (`worker.accelerators`),
 * which wins over discovery, for machines where nvidia-smi cannot see it.
 */
import { execFile } from 'node:child_process'
import { availableParallelism, cpus, freemem, loadavg, totalmem } from 'node:os'
import { CocoonError } from '../../errors.js'

/** One device a worker can run inference on. Unknown values are '' or 0. */
export interface Accelerator {
  kind: 'gpu' | 'cpu'
  index: number
  name: string
  uuid: string
  memoryTotalMiB: number
  memoryUsedMiB: number
  utilizationPct: number
  driver: string
  /** CUDA compute capability such as '9.0'; '' for CPUs and drivers that cannot say. */
  computeCapability: string
}

/** The `--query-gpu` fields this module knows how to read. */
export type NvidiaSmiField =
  | 'index'
  | 'name'
  | 'uuid'
  | 'memory.total'
  | 'memory.used'
  | 'utilization.gpu'
  | 'driver_version'
  | 'compute_cap'

export const NVIDIA_SMI_FIELDS: readonly NvidiaSmiField[] = [
  'index', 'name', 'uuid', 'memory.total', 'memory.used', 'utilization.gpu', 'driver_version', 'compute_cap'
]

/**
 * For older drivers (the 470 series, for one), which do not know `compute_cap`
 * and refuse the whole query when it is asked for.
 */
export const NVIDIA_SMI_FALLBACK_FIELDS: readonly NvidiaSmiField[] = NVIDIA_SMI_FIELDS.filter(f => f !== 'compute_cap')

/** nvidia-smi printed something this module cannot read as its query output. */
export class GpuDiscoveryError extends CocoonError {
  constructor (message: string, options?: { cause?: unknown }) {
    super('ERR_GPU_DISCOVERY', message, options)
  }
}

/** What a command did: its exit code, or null when it was killed (timed out). */
export interface CommandResult {
  stdout: string
  stderr: string
  code: number | null
}

/**
 * Runs a command with a time limit. Resolves whatever the exit code; rejects
 * only when the command cannot be started (an error whose `code` is 'ENOENT'
 * when it does not exist).
 */
export type CommandRunner = (cmd: string, args: readonly string[], timeoutMs: number) => Promise<CommandResult>

export interface DiscoveryOptions {
  /** Path or name of nvidia-smi; default 'nvidia-smi' (looked up on PATH). */
  nvidiaSmi?: string
  /** Limit for each nvidia-smi run in ms; default 5000. */
  timeoutMs?: number
  /** How to run nvidia-smi; tests inject a fake. */
  run?: CommandRunner
  /** Hardware stated in config (see configuredAccelerators); skips discovery. */
  override?: Accelerator[] | 'cpu'
}

export interface DiscoveryResult {
  accelerators: Accelerator[]
  source: 'nvidia-smi' | 'cpu-fallback' | 'config'
  /** Human-readable account of how the list was found, or why it fell back to the CPU. */
  detail: string
}

const DEFAULT_TIMEOUT_MS = 5000

/**
 * Extra time given to a runner past its own limit before discovery stops
 * waiting, so that a runner that kills on time reports its own outcome, and
 * one that cannot (a child stuck in the driver ignores even SIGKILL until the
 * kernel lets go) still cannot hang the worker's start.
 */
const DEADLINE_GRACE_MS = 250

/** A GPU's line is about 150 bytes; far more than this is not nvidia-smi's query output. */
const MAX_OUTPUT_BYTES = 1024 * 1024

const MIB = 1024 * 1024

/** How nvidia-smi says it does not know a field, e.g. `Field "compute_cap" is not a valid field to query.` */
const COMPUTE_CAP_REFUSED = /"compute_cap" is not a valid field/

/** nvidia-smi brackets every "no value" marker ([N/A], [Not Supported], [Unknown Error], …); some versions print a bare N/A. */
const NO_VALUE = /^(?:\[[^\]]*\]|N\/A)$/

const NUMBER = /^\d+(?:\.\d+)?$/

type NumericKey = 'index' | 'memoryTotalMiB' | 'memoryUsedMiB' | 'utilizationPct'
type TextKey = 'name' | 'uuid' | 'driver' | 'computeCapability'

const COLUMNS: Record<NvidiaSmiField, { numeric: true, key: NumericKey } | { numeric: false, key: TextKey }> = {
  index: { numeric: true, key: 'index' },
  name: { numeric: false, key: 'name' },
  uuid: { numeric: false, key: 'uuid' },
  'memory.total': { numeric: true, key: 'memoryTotalMiB' },
  'memory.used': { numeric: true, key: 'memoryUsedMiB' },
  'utilization.gpu': { numeric: true, key: 'utilizationPct' },
  driver_version: { numeric: false, key: 'driver' },
  compute_cap: { numeric: false, key: 'computeCapability' }
}

/**
 * Reads `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`
 * output: one line per GPU, values in `fields` order. Blank lines and CRLF
 * are tolerated; a line with the wrong number of values, or a number field
 * holding something else than a number or a no-value marker, throws
 * GpuDiscoveryError.
 */
export function parseNvidiaSmiCsv (text: string, fields: readonly NvidiaSmiField[] = NVIDIA_SMI_FIELDS): Accelerator[] {
  const accelerators: Accelerator[] = []
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim()
    if (line === '') return
    // GPU names contain spaces but no commas, so a plain split is exact.
    const values = line.split(',').map(v => v.trim())
    if (values.length !== fields.length) {
      throw new GpuDiscoveryError(`nvidia-smi output line ${i + 1}: expected ${fields.length} values (${fields.join(', ')}), got ${values.length}: ${excerpt(line)}`)
    }
    const accelerator = blankAccelerator('gpu', accelerators.length)
    fields.forEach((field, column) => {
      const value = values[column]
      if (NO_VALUE.test(value)) return
      const target = COLUMNS[field]
      if (!target.numeric) {
        accelerator[target.key] = value
      } else if (NUMBER.test(value)) {
        accelerator[target.key] = Number(value)
      } else {
        throw new GpuDiscoveryError(`nvidia-smi output line ${i + 1}: ${field} is not a number: ${excerpt(value)}`)
      }
    })
    accelerators.push(accelerator)
  })
  return accelerators
}

/**
 * The accelerators this machine serves on. Never throws because of
 * nvidia-smi: whatever goes wrong with it yields the CPU, with the reason in
 * `detail`.
 */
export async function discoverAccelerators (options: DiscoveryOptions = {}): Promise<DiscoveryResult> {
  const { override } = options
  if (override === 'cpu') {
    return { accelerators: [cpuAccelerator()], source: 'config', detail: 'configured to serve on the CPU' }
  }
  if (override !== undefined) {
    return { accelerators: override.map(a => ({ ...a })), source: 'config', detail: `configured: ${plural(override.length, 'accelerator')}` }
  }

  const nvidiaSmi = options.nvidiaSmi ?? 'nvidia-smi'
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS
  const run = options.run ?? execFileRunner

  let fields = NVIDIA_SMI_FIELDS
  let attempt = await queryGpus(run, nvidiaSmi, fields, timeoutMs)
  if (!attempt.ok && COMPUTE_CAP_REFUSED.test(attempt.output)) {
    fields = NVIDIA_SMI_FALLBACK_FIELDS
    attempt = await queryGpus(run, nvidiaSmi, fields, timeoutMs)
  }
  if (!attempt.ok) return cpuFallback(attempt.reason)

  let accelerators: Accelerator[]
  try {
    accelerators = parseNvidiaSmiCsv(attempt.stdout, fields)
  } catch (err) {
    if (err instanceof GpuDiscoveryError) return cpuFallback(`could not read ${nvidiaSmi} output: ${err.message}`)
    throw err
  }
  if (accelerators.length === 0) return cpuFallback(`${nvidiaSmi} listed no GPUs`)

  const drivers = [...new Set(accelerators.map(a => a.driver).filter(d => d !== ''))]
  let detail = `${nvidiaSmi}: ${plural(accelerators.length, 'GPU')}`
  if (drivers.length > 0) detail += `, driver ${drivers.join(', ')}`
  if (fields === NVIDIA_SMI_FALLBACK_FIELDS) detail += '; this driver cannot report compute capability'
  return { accelerators, source: 'nvidia-smi', detail }
}

/** A configured accelerator (already checked by the config schema): what it leaves out is filled as discovery would. */
export type ConfiguredAccelerator = Partial<Accelerator> & Pick<Accelerator, 'name' | 'memoryTotalMiB'>

/** The `worker.accelerators` list as discovery results: kind 'gpu' and index = position unless given. */
export function configuredAccelerators (list: readonly ConfiguredAccelerator[]): Accelerator[] {
  return list.map((a, position) => ({ ...blankAccelerator(a.kind ?? 'gpu', position), ...a }))
}

type Attempt =
  | { ok: true, stdout: string }
  | { ok: false, reason: string, output: string }

async function queryGpus (run: CommandRunner, nvidiaSmi: string, fields: readonly NvidiaSmiField[], timeoutMs: number): Promise<Attempt> {
  const args = [`--query-gpu=${fields.join(',')}`, '--format=csv,noheader,nounits']
  let result: CommandResult
  try {
    result = await withDeadline(run, nvidiaSmi, args, timeoutMs)
  } catch (err) {
    return { ok: false, reason: startFailure(nvidiaSmi, err), output: '' }
  }
  if (result.code === null) return { ok: false, reason: `${nvidiaSmi} did not finish within ${timeoutMs} ms`, output: '' }
  // nvidia-smi prints its complaints on stdout, so both streams are searched.
  const output = `${result.stdout}\n${result.stderr}`
  if (result.code !== 0) {
    const said = output.split(/\r?\n/).map(l => l.trim()).find(l => l !== '')
    return { ok: false, reason: `${nvidiaSmi} exited with code ${result.code}${said === undefined ? '' : `: ${excerpt(said)}`}`, output }
  }
  return { ok: true, stdout: result.stdout }
}

/** Runs with an outer deadline, answering "killed" (code null) when the runner overstays it. */
async function withDeadline (run: CommandRunner, cmd: string, args: readonly string[], timeoutMs: number): Promise<CommandResult> {
  const running = (async () => await run(cmd, args, timeoutMs))()
  // If the deadline wins, a later rejection must not surface as unhandled.
  running.catch(() => {})
  let timer: ReturnType<typeof setTimeout> | undefined
  const deadline = new Promise<CommandResult>(resolve => {
    timer = setTimeout(() => { resolve({ stdout: '', stderr: '', code: null }) }, timeoutMs + DEADLINE_GRACE_MS)
  })
  try {
    return await Promise.race([running, deadline])
  } finally {
    clearTimeout(timer)
  }
}

function startFailure (cmd: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ENOENT') return `${cmd} not found`
  if (code === 'EACCES') return `${cmd} is not executable`
  return `${cmd} could not be run: ${err instanceof Error ? err.message : String(err)}`
}

const execFileRunner: CommandRunner = async (cmd, args, timeoutMs) => await new Promise((resolve, reject) => {
  // SIGKILL because a nvidia-smi waiting on a wedged driver may ignore SIGTERM.
  execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, windowsHide: true, encoding: 'utf8' }, (err, stdout, stderr) => {
    if (err === null) resolve({ stdout, stderr, code: 0 })
    else if (typeof err.code === 'number') resolve({ stdout, stderr, code: err.code })
    // A string code is a failure to start (ENOENT, EACCES) or an over-long output.
    else if (typeof err.code === 'string') reject(err)
    else resolve({ stdout, stderr, code: null })
  })
})

function cpuFallback (reason: string): DiscoveryResult {
  return { accelerators: [cpuAccelerator()], source: 'cpu-fallback', detail: reason }
}

/** The host CPU as one accelerator; its load is the 1-minute load average over the cores. */
function cpuAccelerator (): Accelerator {
  const info = cpus()
  // cpus() is empty where /proc/cpuinfo cannot be read (some sandboxes).
  const cores = info.length > 0 ? info.length : availableParallelism()
  const model = (info[0]?.model ?? '').trim()
  const total = totalmem()
  return {
    ...blankAccelerator('cpu', 0),
    name: `${model === '' ? 'unknown CPU' : model} (${plural(cores, 'core')})`,
    memoryTotalMiB: Math.floor(total / MIB),
    memoryUsedMiB: Math.floor(Math.max(0, total - freemem()) / MIB),
    utilizationPct: Math.min(100, Math.max(0, Math.round(loadavg()[0] / cores * 100)))
  }
}

function blankAccelerator (kind: Accelerator['kind'], index: number): Accelerator {
  return { kind, index, name: '', uuid: '', memoryTotalMiB: 0, memoryUsedMiB: 0, utilizationPct: 0, driver: '', computeCapability: '' }
}

function plural (n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`
}

/** Keeps messages that quote foreign output short. */
function excerpt (s: string): string {
  return s.length > 160 ? `${s.slice(0, 160)}…` : s
}


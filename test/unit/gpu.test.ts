/**
 * Accelerator discovery: parsing nvidia-smi's CSV output (fixtures in
 * test/fixtures/nvidia-smi), the ways nvidia-smi fails and the CPU fallback
 * each must lead to, the compute_cap retry for old drivers, and config
 * overrides. nvidia-smi is faked by an injected runner or a small shell
 * script, so the tests need no GPU; one test runs real discovery on the host.
 */
import { access, chmod, writeFile } from 'node:fs/promises'
import { constants, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'chai'
import { CocoonError, ConfigError } from '../../src/errors.js'
import {
  type Accelerator,
  type CommandResult,
  type CommandRunner,
  type DiscoveryResult,
  discoverAccelerators,
  GpuDiscoveryError,
  NVIDIA_SMI_FALLBACK_FIELDS,
  NVIDIA_SMI_FIELDS,
  configuredAccelerators,
  parseNvidiaSmiCsv
} from '../../src/roles/worker/gpu.js'
import { cleanupTempDirs, tempDir } from '../helpers.js'
import { defaults, merge, validate } from '../../src/config/load.js'
import type { NodeConfig } from '../../src/config/schema.js'

// Compiled to dist/test/unit; the fixtures stay in the source tree.
const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/nvidia-smi/', import.meta.url))

function fixture (name: string): string {
  return readFileSync(join(FIXTURES, name), 'utf8')
}

/** A runner that answers each call with the next reply (an Error is thrown) and records the calls. */
function scripted (...replies: Array<CommandResult | Error>): { run: CommandRunner, calls: Array<{ cmd: string, args: readonly string[], timeoutMs: number }> } {
  const calls: Array<{ cmd: string, args: readonly string[], timeoutMs: number }> = []
  const run: CommandRunner = async (cmd, args, timeoutMs) => {
    calls.push({ cmd, args, timeoutMs })
    const reply = replies.shift()
    if (reply === undefined) throw new Error('unexpected extra nvidia-smi call')
    if (reply instanceof Error) throw reply
    return reply
  }
  return { run, calls }
}

function ok (stdout: string): CommandResult {
  return { stdout, stderr: '', code: 0 }
}

function spawnError (code: string): Error {
  return Object.assign(new Error(`spawn nvidia-smi ${code}`), { code })
}

/** The CPU description every fallback must carry: one plausible accelerator of kind 'cpu'. */
function expectCpuFallback (result: DiscoveryResult, detail: RegExp): void {
  expect(result.source).to.equal('cpu-fallback')
  expect(result.detail).to.match(detail)
  expect(result.accelerators).to.have.length(1)
  const [cpu] = result.accelerators
  expect(cpu.kind).to.equal('cpu')
  expect(cpu.index).to.equal(0)
  expect(cpu.name).to.match(/ \(\d+ cores?\)$/)
  expect(cpu.memoryTotalMiB).to.be.greaterThan(0)
  expect(cpu.memoryUsedMiB).to.be.within(0, cpu.memoryTotalMiB)
  expect(cpu.utilizationPct).to.be.within(0, 100)
  expect(cpu.computeCapability).to.equal('')
}

async function onPath (name: string): Promise<boolean> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(d => d !== '')) {
    try {
      await access(join(dir, name), constants.X_OK)
      return true
    } catch {}
  }
  return false
}

const FULL_QUERY = '--query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu,driver_version,compute_cap'
const OLD_DRIVER_QUERY = '--query-gpu=index,name,uuid,memory.total,memory.used,utilization.gpu,driver_version'

describe('nvidia-smi output parsing', () => {
  it('reads one H100, name with spaces included', () => {
    expect(parseNvidiaSmiCsv(fixture('h100-x1.csv'), NVIDIA_SMI_FIELDS)).to.deep.equal([{
      kind: 'gpu',
      index: 0,
      name: 'NVIDIA H100 80GB HBM3',
      uuid: 'GPU-4f1c2a7e-9b3d-5e8f-a06c-1d2e3f4a5b6c',
      memoryTotalMiB: 81559,
      memoryUsedMiB: 1,
      utilizationPct: 0,
      driver: '550.54.15',
      computeCapability: '9.0'
    }])
  })

  it('reads eight H100s with their own memory use and load, ignoring the trailing blank line', () => {
    const gpus = parseNvidiaSmiCsv(fixture('h100-x8.csv'), NVIDIA_SMI_FIELDS)
    expect(gpus.map(g => g.index)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7])
    expect(new Set(gpus.map(g => g.uuid)).size).to.equal(8)
    expect(gpus.every(g => g.name === 'NVIDIA H100 80GB HBM3' && g.memoryTotalMiB === 81559)).to.equal(true)
    expect(gpus.map(g => g.memoryUsedMiB)).to.deep.equal([72411, 72411, 40213, 40213, 18750, 4, 4, 1])
    expect(gpus.map(g => g.utilizationPct)).to.deep.equal([97, 95, 61, 58, 23, 0, 0, 0])
  })

  it('reads a mixed machine and takes [N/A] as unknown', () => {
    const [rtx, a100] = parseNvidiaSmiCsv(fixture('mixed-4090-a100.csv'), NVIDIA_SMI_FIELDS)
    expect(rtx).to.include({ name: 'NVIDIA GeForce RTX 4090', memoryTotalMiB: 24564, utilizationPct: 7, computeCapability: '8.9' })
    expect(a100).to.include({ index: 1, name: 'NVIDIA A100-SXM4-40GB', memoryTotalMiB: 40960, utilizationPct: 0, computeCapability: '8.0' })
  })

  it('takes [Not Supported] and a bare N/A as unknown, in number and text fields alike', () => {
    const [gpu] = parseNvidiaSmiCsv('0, NVIDIA A10G, [N/A], 23028, [Not Supported], N/A, 535.104.05, [N/A]\n', NVIDIA_SMI_FIELDS)
    expect(gpu).to.include({ uuid: '', memoryTotalMiB: 23028, memoryUsedMiB: 0, utilizationPct: 0, computeCapability: '' })
  })

  it('reads CRLF output the same as LF output', () => {
    const lf = fixture('h100-x8.csv')
    expect(parseNvidiaSmiCsv(lf.replace(/\n/g, '\r\n'), NVIDIA_SMI_FIELDS)).to.deep.equal(parseNvidiaSmiCsv(lf, NVIDIA_SMI_FIELDS))
  })

  it('reads output without compute_cap when given the fallback fields', () => {
    const [gpu] = parseNvidiaSmiCsv(fixture('v100-old-driver.csv'), NVIDIA_SMI_FALLBACK_FIELDS)
    expect(gpu).to.include({ name: 'Tesla V100-SXM2-16GB', memoryTotalMiB: 16160, driver: '470.82.01', computeCapability: '' })
  })

  it('reads empty output as no GPUs', () => {
    expect(parseNvidiaSmiCsv('\n', NVIDIA_SMI_FIELDS)).to.deep.equal([])
  })

  it('refuses a truncated line with a typed error naming the line', () => {
    let err: unknown
    try {
      parseNvidiaSmiCsv(fixture('malformed-truncated.csv'), NVIDIA_SMI_FIELDS)
    } catch (e) {
      err = e
    }
    expect(err).to.be.instanceOf(GpuDiscoveryError)
    expect(err).to.be.instanceOf(CocoonError)
    expect((err as GpuDiscoveryError).code).to.equal('ERR_GPU_DISCOVERY')
    expect((err as Error).message).to.match(/line 2: expected 8 values .* got 4/)
  })

  it('refuses a number field holding something else with a typed error naming the field', () => {
    expect(() => parseNvidiaSmiCsv(fixture('malformed-with-units.csv'), NVIDIA_SMI_FIELDS))
      .to.throw(GpuDiscoveryError, /line 1: memory\.total is not a number: 81559 MiB/)
  })

  it('refuses output with fewer values than the fields asked for', () => {
    expect(() => parseNvidiaSmiCsv(fixture('v100-old-driver.csv'), NVIDIA_SMI_FIELDS)).to.throw(GpuDiscoveryError, /expected 8 values/)
  })
})

describe('accelerator discovery', () => {
  after(cleanupTempDirs)

  it('asks nvidia-smi for the full field list and reports its GPUs', async () => {
    const { run, calls } = scripted(ok(fixture('h100-x8.csv')))
    const result = await discoverAccelerators({ run, timeoutMs: 1234 })
    expect(calls).to.deep.equal([{ cmd: 'nvidia-smi', args: [FULL_QUERY, '--format=csv,noheader,nounits'], timeoutMs: 1234 }])
    expect(result.source).to.equal('nvidia-smi')
    expect(result.accelerators).to.have.length(8)
    expect(result.detail).to.equal('nvidia-smi: 8 GPUs, driver 550.54.15')
  })

  it('asks again without compute_cap when an old driver refuses it', async () => {
    const { run, calls } = scripted(
      { stdout: fixture('error-compute-cap-invalid.txt'), stderr: '', code: 2 },
      ok(fixture('v100-old-driver.csv'))
    )
    const result = await discoverAccelerators({ run, nvidiaSmi: '/usr/bin/nvidia-smi' })
    expect(calls).to.have.length(2)
    expect(calls[0].args[0]).to.equal(FULL_QUERY)
    expect(calls[1]).to.deep.equal({ cmd: '/usr/bin/nvidia-smi', args: [OLD_DRIVER_QUERY, '--format=csv,noheader,nounits'], timeoutMs: 5000 })
    expect(result.source).to.equal('nvidia-smi')
    expect(result.accelerators).to.have.length(1)
    expect(result.accelerators[0]).to.include({ name: 'Tesla V100-SXM2-16GB', computeCapability: '' })
    expect(result.detail).to.match(/cannot report compute capability/)
  })

  it('falls back to the CPU when nvidia-smi is not installed', async () => {
    const { run, calls } = scripted(spawnError('ENOENT'))
    expectCpuFallback(await discoverAccelerators({ run }), /^nvidia-smi not found$/)
    expect(calls).to.have.length(1)
  })

  it('falls back to the CPU when nvidia-smi cannot reach the driver, quoting it', async () => {
    const { run, calls } = scripted({ stdout: fixture('error-driver-unreachable.txt'), stderr: '', code: 9 })
    expectCpuFallback(await discoverAccelerators({ run }), /^nvidia-smi exited with code 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver/)
    expect(calls).to.have.length(1)
  })

  it('falls back to the CPU when nvidia-smi sees no GPU', async () => {
    const { run } = scripted({ stdout: fixture('error-no-devices.txt'), stderr: '', code: 6 })
    expectCpuFallback(await discoverAccelerators({ run }), /exited with code 6: No devices were found/)
    const empty = scripted(ok(''))
    expectCpuFallback(await discoverAccelerators({ run: empty.run }), /^nvidia-smi listed no GPUs$/)
  })

  it('falls back to the CPU when nvidia-smi is killed for taking too long', async () => {
    const { run } = scripted({ stdout: '', stderr: '', code: null })
    expectCpuFallback(await discoverAccelerators({ run, timeoutMs: 700 }), /^nvidia-smi did not finish within 700 ms$/)
  })

  it('stops waiting for a runner that never answers', async () => {
    const run: CommandRunner = async () => await new Promise<CommandResult>(() => {})
    const started = Date.now()
    expectCpuFallback(await discoverAccelerators({ run, timeoutMs: 20 }), /did not finish within 20 ms/)
    expect(Date.now() - started).to.be.below(2000)
  })

  it('falls back to the CPU on output it cannot read, saying why', async () => {
    const { run } = scripted(ok(fixture('malformed-with-units.csv')))
    expectCpuFallback(await discoverAccelerators({ run }), /could not read nvidia-smi output: .*memory\.total is not a number/)
  })

  it('uses the configured list without running nvidia-smi', async () => {
    const { run, calls } = scripted()
    const configured: Accelerator[] = [{ kind: 'gpu', index: 3, name: 'NVIDIA H200', uuid: '', memoryTotalMiB: 143771, memoryUsedMiB: 0, utilizationPct: 0, driver: '', computeCapability: '9.0' }]
    const result = await discoverAccelerators({ run, override: configured })
    expect(result).to.deep.equal({ accelerators: configured, source: 'config', detail: 'configured: 1 accelerator' })
    expect(result.accelerators[0]).to.not.equal(configured[0])
    const cpu = await discoverAccelerators({ run, override: 'cpu' })
    expect(cpu.source).to.equal('config')
    expect(cpu.accelerators.map(a => a.kind)).to.deep.equal(['cpu'])
    expect(calls).to.have.length(0)
  })

  describe('with the real process runner', function () {
    before(function () { if (process.platform === 'win32') this.skip() })

    async function fakeNvidiaSmi (script: string): Promise<string> {
      const path = join(await tempDir(), 'nvidia-smi')
      await writeFile(path, `#!/bin/sh\n${script}\n`)
      await chmod(path, 0o755)
      return path
    }

    it('reads what the executable prints and passes it the query', async () => {
      // Answers only the exact query, so wrong arguments show as a failure.
      const path = await fakeNvidiaSmi(`[ "$1" = "${FULL_QUERY}" ] && [ "$2" = "--format=csv,noheader,nounits" ] || exit 2\ncat '${join(FIXTURES, 'mixed-4090-a100.csv')}'`)
      const result = await discoverAccelerators({ nvidiaSmi: path })
      expect(result.source).to.equal('nvidia-smi')
      expect(result.accelerators.map(a => a.name)).to.deep.equal(['NVIDIA GeForce RTX 4090', 'NVIDIA A100-SXM4-40GB'])
    })

    it('reports a missing executable as not found', async () => {
      const path = join(await tempDir(), 'no-such-nvidia-smi')
      expectCpuFallback(await discoverAccelerators({ nvidiaSmi: path }), new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} not found$`))
    })

    it('kills a hung executable at the time limit', async () => {
      const path = await fakeNvidiaSmi('exec sleep 30')
      const started = Date.now()
      expectCpuFallback(await discoverAccelerators({ nvidiaSmi: path, timeoutMs: 200 }), /did not finish within 200 ms/)
      expect(Date.now() - started).to.be.below(5000)
    })
  })

  it('gives a sane answer on this machine with nothing injected', async () => {
    const result = await discoverAccelerators()
    if (!await onPath('nvidia-smi')) {
      expect(result.source).to.equal('cpu-fallback')
      expect(result.detail).to.equal('nvidia-smi not found')
    } else {
      // Installed is not the same as working (no driver in a container), so either answer is sane.
      expect(result.source).to.be.oneOf(['nvidia-smi', 'cpu-fallback'])
    }
    expect(result.accelerators.length).to.be.greaterThan(0)
    expect(result.accelerators.every(a => a.memoryTotalMiB > 0)).to.equal(true)
  })
})

describe('accelerator config override', () => {
  /** The worker config's accelerators after the schema (what the worker role hands to discovery). */
  function configured (value: unknown): NodeConfig['worker']['accelerators'] {
    return validate(merge(defaults('local', 'worker', {}), { worker: { accelerators: value } })).worker.accelerators
  }

  function configError (value: unknown): ConfigError {
    try {
      configured(value)
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError)
      expect((err as ConfigError).key).to.match(/^worker\.accelerators/)
      return err as ConfigError
    }
    throw new Error('expected a ConfigError')
  }

  it("accepts 'cpu'", () => {
    expect(configured('cpu')).to.equal('cpu')
  })

  it('fills in what a minimal entry leaves out', () => {
    const list = configured([
      { name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559 },
      { name: 'NVIDIA H100 80GB HBM3', memoryTotalMiB: 81559, computeCapability: '9.0', driver: '550.54.15', uuid: 'GPU-x', memoryUsedMiB: 10, utilizationPct: 12.5 }
    ])
    if (!Array.isArray(list)) throw new Error('expected a list')
    expect(configuredAccelerators(list)).to.deep.equal([
      { kind: 'gpu', index: 0, name: 'NVIDIA H100 80GB HBM3', uuid: '', memoryTotalMiB: 81559, memoryUsedMiB: 0, utilizationPct: 0, driver: '', computeCapability: '' },
      { kind: 'gpu', index: 1, name: 'NVIDIA H100 80GB HBM3', uuid: 'GPU-x', memoryTotalMiB: 81559, memoryUsedMiB: 10, utilizationPct: 12.5, driver: '550.54.15', computeCapability: '9.0' }
    ])
  })

  it('refuses values that are not a list or cpu', () => {
    expect(configError('gpu').message).to.equal('worker.accelerators: expected auto, cpu, or a list of { name, memoryTotalMiB, ... }')
    expect(configError({ name: 'x', memoryTotalMiB: 1 }).message).to.match(/expected auto, cpu, or a list/)
    expect(configError([]).message).to.match(/at least one accelerator/)
    expect(configError(['NVIDIA H100']).key).to.equal('worker.accelerators[0]')
  })

  it('refuses entries without name or memoryTotalMiB, or with wrong values', () => {
    expect(configError([{ memoryTotalMiB: 81559 }]).key).to.equal('worker.accelerators[0].name')
    expect(configError([{ name: 'NVIDIA H100' }]).key).to.equal('worker.accelerators[0].memoryTotalMiB')
    expect(configError([{ name: 'a', memoryTotalMiB: 1 }, { name: 'NVIDIA H100', memoryTotalMiB: '80GB' }]).message)
      .to.match(/\[1\]\.memoryTotalMiB: expected memory in MiB, a whole number/)
    expect(configError([{ name: ' ', memoryTotalMiB: 1 }]).message).to.match(/\[0\]\.name: expected the accelerator name/)
    expect(configError([{ name: 'x', memoryTotalMiB: 1, kind: 'tpu' }]).message).to.match(/\[0\]\.kind: expected gpu or cpu/)
    expect(configError([{ name: 'x', memoryTotalMiB: 100, memoryUsedMiB: 101 }]).message).to.match(/memoryUsedMiB: expected at most memoryTotalMiB/)
    expect(configError([{ name: 'x', memoryTotalMiB: 100, utilizationPct: 101 }]).message).to.match(/utilizationPct: expected a percentage/)
  })

  it('refuses misspelt fields and reused indices', () => {
    expect(configError([{ name: 'x', memoryTotalMib: 1 }]).message).to.match(/\[0\]\.memoryTotalMib: unknown key/)
    expect(configError([{ name: 'a', memoryTotalMiB: 1, index: 1 }, { name: 'b', memoryTotalMiB: 1 }]).message)
      .to.match(/expected each accelerator index once/)
  })
})

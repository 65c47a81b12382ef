/** Drains a backend's event stream in unit tests of the backends. */
import { expect } from 'chai'
import { InferenceError } from '../../src/inference/types.js'
import type { BackendEvent } from '../../src/inference/types.js'

export async function collect (events: AsyncIterable<BackendEvent>): Promise<BackendEvent[]> {
  const out: BackendEvent[] = []
  for await (const e of events) out.push(e)
  return out
}

export async function failure (events: AsyncIterable<BackendEvent>): Promise<InferenceError> {
  const err = await collect(events).then(() => undefined, (e: unknown) => e)
  expect(err, 'the job should fail').to.be.instanceOf(InferenceError)
  return err as InferenceError
}

/** Polls `check` every `intervalMs` until it holds; fails naming `what` after `timeoutMs`. Returns the elapsed ms. */
export async function waitFor (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string, intervalMs = 20): Promise<number> {
  const start = performance.now()
  while (!(await check())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, intervalMs))
  }
  return performance.now() - start
}

/**
 * The client role: finds and attests proxies, runs sealed jobs through them,
 * and serves the OpenAI-compatible HTTP API on loopback.
 */
import { ConfigError } from '../../errors.js'
import { PeerAttestations } from '../../tee/peer-attestations.js'
import { startApiServer } from './http-api.js'
import { JobClient } from './job-client.js'
import { ProxyFinder } from './proxy-finder.js'
import { ProxyPool } from './proxy-pool.js'
import type { ApiServer } from './http-api.js'
import type { RoleBehaviour, RoleContext } from '../role.js'
import type { EvidenceVerifier } from '../../tee/attestor.js'

export class ClientRole implements RoleBehaviour {
  private readonly ctx: RoleContext
  readonly finder: ProxyFinder
  readonly pool: ProxyPool
  readonly jobs: JobClient
  private api?: ApiServer

  constructor (ctx: RoleContext, verifier: EvidenceVerifier) {
    this.ctx = ctx
    this.finder = new ProxyFinder(ctx)
    const attestations = new PeerAttestations(ctx.node, { verifier, metrics: ctx.metrics, log: ctx.logger.forComponent('cocoon:client:attestations') })
    this.pool = new ProxyPool(ctx.node, this.finder, ctx.directory, attestations, ctx.logger.forComponent('cocoon:client:proxies'))
    const c = ctx.config.client
    this.jobs = new JobClient(ctx.node, {
      proxies: this.pool,
      verifier,
      maxPricePromptPerM: BigInt(c.maxPricePromptPerM),
      maxPriceCompletionPerM: BigInt(c.maxPriceCompletionPerM),
      defaultMaxTokens: c.defaultMaxTokens,
      requestTimeoutMs: c.requestTimeoutMs,
      queue: { maxConcurrent: c.maxConcurrent, depth: c.queueDepth, maxWaitMs: c.queueWaitMs },
      payments: ctx.settlement == null
        ? undefined
        : {
            payerFor: async (proxy, signal) => (ctx.settlement as NonNullable<typeof ctx.settlement>).payerFor(proxy, signal),
            payableProxies: () => (ctx.settlement as NonNullable<typeof ctx.settlement>).payablePeers()
          },
      metrics: ctx.metrics,
      log: ctx.logger.forComponent('cocoon:client:jobs')
    })
  }

  /** The API's base URL (http://127.0.0.1:PORT), once started. */
  get apiUrl (): string | null {
    return this.api?.url ?? null
  }

  async start (): Promise<void> {
    await this.finder.start()
    const api = this.ctx.config.client.api
    if (!api.enabled) return
    try {
      this.api = await startApiServer({
        host: api.host,
        port: api.port,
        service: this.jobs,
        log: line => { this.ctx.log('%s', line) }
      })
    } catch (err) {
      await this.finder.stop()
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE') {
        throw new ConfigError('client.api.port', `port ${api.port} on ${api.host} is taken; pick another with --api-port (0 = any free port)`, { cause: err })
      }
      throw err
    }
    this.ctx.console.info(`OpenAI-compatible API on ${this.api.url}/v1 (chat/completions, completions, models)`)
  }

  async stop (): Promise<void> {
    await this.api?.close()
    await this.finder.stop()
  }

  status (): Record<string, unknown> {
    return { api: this.apiUrl, ...this.finder.status(), pool: this.pool.status(), jobs: this.jobs.status() }
  }
}

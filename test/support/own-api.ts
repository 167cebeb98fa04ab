import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { HotPathCache } from '../../functions/adapters/hot-path-cache'
import { loadApiConfig, sandboxInvokeTimeoutMs } from '../../functions/config'
import type { BackgroundRuns } from '../../functions/core/background'
import type { ModelProvider } from '../../functions/core/model'
import type { Sandbox } from '../../functions/core/ports'
import { sandboxUrlLifetime, UploadSlots } from '../../functions/core/workspace'
import { createApiHandler } from '../../functions/handlers/app'
import type { ApiDeps } from '../../functions/handlers/deps'
import { startApiServer } from '../../functions/local/api-gateway'
import { LOCAL_BUCKET } from '../../functions/local/s3'
import { LOCAL_TABLE, type LocalService } from '../../functions/local/service'

/**
 * A second API server: the service's own handler over a running local service's real stores
 * (dynalite, s3rver) and API keys, with the sandbox and background adapters a test chooses (e.g.
 * a LambdaClient with a tiny timeout, or asynchronous invokes to a stand-in worker endpoint).
 */
export async function startOwnApi(
  service: LocalService,
  parts: { sandbox: Sandbox; background?: BackgroundRuns; model?: ModelProvider; env?: Record<string, string> },
): Promise<{ url: string; deps: ApiDeps; stop(): Promise<void> }> {
  const config = loadApiConfig({
    SANDBOX_FUNCTION_NAME: 'sandbox',
    TABLE_NAME: LOCAL_TABLE,
    BUCKET_NAME: LOCAL_BUCKET,
    KEY_CACHE_TTL_MS: '0',
    ...parts.env,
  })
  const deps: ApiDeps = {
    config,
    sandbox: parts.sandbox,
    store: service.store,
    hot: new HotPathCache(service.store, config.keyCacheTtlMs, config.usageReservationBatch),
    background: parts.background,
    model: parts.model,
    clock: { now: () => new Date() },
    blobs: service.blobs,
    slots: new UploadSlots(service.blobs, sandboxUrlLifetime(sandboxInvokeTimeoutMs(config.codeTimeoutMs))),
  }
  const server: Server = await startApiServer(createApiHandler(deps) as never, 0, () => undefined)
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    deps,
    async stop() {
      server.closeAllConnections()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
}

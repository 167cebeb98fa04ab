import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb'
import { LambdaClient, type LambdaClientConfig } from '@aws-sdk/client-lambda'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import { S3BlobStore } from '../adapters/s3-blobs'
import { sandboxUrlLifetime, UploadSlots } from '../core/workspace'
import { DynamoStore } from '../adapters/dynamo-store'
import { HotPathCache } from '../adapters/hot-path-cache'
import { LambdaSandbox } from '../adapters/lambda-sandbox'
import { createModelProvider } from '../adapters/models/index'
import { type ApiConfig, sandboxInvokeTimeoutMs } from '../config'
import { LambdaBackground } from '../adapters/lambda-background'
import { type BackgroundRuns, InProcessBackground } from '../core/background'
import type { ModelProvider } from '../core/model'
import type { ResponsesDeps } from '../core/responses'
import type { BlobStore, Clock, Sandbox } from '../core/ports'

export interface ApiDeps {
  config: ApiConfig
  sandbox: Sandbox
  store: DynamoStore
  /** Keys, plans and usage on the hot path, cached in front of the store. */
  hot: HotPathCache
  /** Where background runs go; undefined when none is configured (then 503). */
  background?: BackgroundRuns
  /** Undefined when no provider is configured: /v1/responses then answers 503 model_not_configured. */
  model?: ModelProvider
  clock: Clock
  /** File bytes and large session state. */
  blobs: BlobStore
  /** Presigned upload URLs handed to the sandbox, signed ahead. */
  slots: UploadSlots
}

/** Client settings for local mode (endpoints, dummy credentials, a chosen model); empty when deployed. */
export interface ClientOverrides {
  lambda?: LambdaClientConfig
  dynamo?: DynamoDBClientConfig
  s3?: S3ClientConfig
  model?: ModelProvider | null
  /** Run background responses in this process (local mode). */
  inProcessBackground?: boolean
}

/**
 * The LambdaClient that invokes the sandbox, one code block per invoke.
 *
 * - One attempt, never a retry: the SDK's standard strategy retries timeouts, dropped connections
 *   (ECONNRESET, EPIPE) and 5xx answers, after which the block may well have run; a second run
 *   would repeat it in the same session (its state, its files). A throttled invoke (429, nothing
 *   ran) is answered 429 sandbox_busy, and the caller retries.
 * - A whole-request timeout that throws: @smithy/node-http-handler only logs a warning when
 *   `requestTimeout` passes unless `throwOnRequestTimeout` is set, and a synchronous invoke
 *   sends nothing until it ends, so without it a stuck invoke would hold the API until its own
 *   Lambda timeout. The default is sandboxInvokeTimeoutMs (functions/config.ts).
 */
export function createSandboxLambdaClient(
  codeTimeoutMs: number,
  overrides: LambdaClientConfig = {},
  timeoutMs = sandboxInvokeTimeoutMs(codeTimeoutMs),
): LambdaClient {
  return new LambdaClient({
    ...overrides,
    maxAttempts: 1,
    requestHandler: { requestTimeout: timeoutMs, throwOnRequestTimeout: true, connectionTimeout: 5_000 },
  })
}

/** The composition root: the same adapters deployed and locally (local passes endpoint overrides). */
export function createDeps(config: ApiConfig, overrides: ClientOverrides = {}, env: Record<string, string | undefined> = process.env): ApiDeps {
  const lambda = createSandboxLambdaClient(config.codeTimeoutMs, overrides.lambda)
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ ...overrides.dynamo }), {
    marshallOptions: { removeUndefinedValues: true },
  })
  const store = new DynamoStore(doc, config.tableName)
  // Checksums only where S3 requires them: presigned URLs then carry no checksum the runner
  // would have to send, and s3rver stores streamed bodies as they are.
  const s3 = new S3Client({ requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED', ...overrides.s3 })
  const blobs = new S3BlobStore(s3, config.bucketName)
  const deps: ApiDeps = {
    config,
    hot: new HotPathCache(store, config.keyCacheTtlMs, config.usageReservationBatch),
    sandbox: new LambdaSandbox({
      client: lambda,
      functionName: config.sandboxFunctionName,
      tenantIsolation: config.tenantIsolation,
      invokeTimeoutMs: sandboxInvokeTimeoutMs(config.codeTimeoutMs),
    }),
    store,
    model: overrides.model === null ? undefined : (overrides.model ?? createModelProvider(env)),
    clock: { now: () => new Date() },
    blobs,
    slots: new UploadSlots(blobs, sandboxUrlLifetime(sandboxInvokeTimeoutMs(config.codeTimeoutMs))),
  }
  if (overrides.inProcessBackground) deps.background = new InProcessBackground(() => responsesDepsOf(deps))
  else if (config.workerFunctionName) {
    // Its own client: an Event invoke may be retried (the SDK's standard retries), since the worker
    // takes a run once however often its ticket arrives; a short timeout, since Lambda only queues it.
    const dispatch = new LambdaClient({
      ...overrides.lambda,
      maxAttempts: 3,
      requestHandler: { requestTimeout: 10_000, throwOnRequestTimeout: true, connectionTimeout: 5_000 },
    })
    deps.background = new LambdaBackground(dispatch, config.workerFunctionName)
  }
  return deps
}

/** What the run loop needs, built from the API's deps (the same for every entry point). */
export function responsesDepsOf(deps: ApiDeps): ResponsesDeps {
  const { config } = deps
  return {
    model: deps.model,
    sandbox: deps.sandbox,
    store: deps.store,
    assistants: deps.hot,
    orgs: deps.hot,
    meter: deps.hot,
    clock: deps.clock,
    plans: config.plans,
    defaultPlan: config.defaultPlan,
    facts: { pythonVersion: config.pythonVersion, timeoutSeconds: Math.round(config.codeTimeoutMs / 1000) },
    limits: { maxCodeBlocks: config.maxCodeBlocksPerResponse, deadlineMs: config.responseDeadlineMs, codeTimeoutMs: config.codeTimeoutMs },
    files: deps.store,
    blobs: deps.blobs,
    slots: deps.slots,
  }
}

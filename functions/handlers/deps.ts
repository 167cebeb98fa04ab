import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb'
import { LambdaClient, type LambdaClientConfig } from '@aws-sdk/client-lambda'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3'
import { S3BlobStore } from '../adapters/s3-blobs'
import { UploadSlots } from '../core/workspace'
import { DynamoStore } from '../adapters/dynamo-store'
import { HotPathCache } from '../adapters/hot-path-cache'
import { LambdaSandbox } from '../adapters/lambda-sandbox'
import { createModelProvider } from '../adapters/models/index'
import type { ApiConfig } from '../config'
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

/** The composition root: the same adapters deployed and locally (local passes endpoint overrides). */
export function createDeps(config: ApiConfig, overrides: ClientOverrides = {}, env: Record<string, string | undefined> = process.env): ApiDeps {
  const lambda = new LambdaClient({
    ...overrides.lambda,
    maxAttempts: 2,
    // The block's own limit plus room for the invoke and a cold start.
    requestHandler: { requestTimeout: config.codeTimeoutMs + 20_000, connectionTimeout: 5_000 },
  })
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
    }),
    store,
    model: overrides.model === null ? undefined : (overrides.model ?? createModelProvider(env)),
    clock: { now: () => new Date() },
    blobs,
    slots: new UploadSlots(blobs),
  }
  if (overrides.inProcessBackground) deps.background = new InProcessBackground(() => responsesDepsOf(deps))
  else if (config.workerFunctionName) deps.background = new LambdaBackground(lambda, config.workerFunctionName)
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

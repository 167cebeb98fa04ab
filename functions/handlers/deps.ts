import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb'
import { LambdaClient, type LambdaClientConfig } from '@aws-sdk/client-lambda'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { DynamoStore } from '../adapters/dynamo-store'
import { HotPathCache } from '../adapters/hot-path-cache'
import { LambdaSandbox } from '../adapters/lambda-sandbox'
import { createModelProvider } from '../adapters/models/index'
import type { ApiConfig } from '../config'
import type { ModelProvider } from '../core/model'
import type { Clock, Sandbox } from '../core/ports'

export interface ApiDeps {
  config: ApiConfig
  sandbox: Sandbox
  store: DynamoStore
  /** Keys, plans and usage on the hot path, cached in front of the store. */
  hot: HotPathCache
  /** Undefined when no provider is configured: /v1/responses then answers 503 model_not_configured. */
  model?: ModelProvider
  clock: Clock
}

/** Client settings for local mode (endpoints, dummy credentials, a chosen model); empty when deployed. */
export interface ClientOverrides {
  lambda?: LambdaClientConfig
  dynamo?: DynamoDBClientConfig
  model?: ModelProvider | null
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
  return {
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
  }
}

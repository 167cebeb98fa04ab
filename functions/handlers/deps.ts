import { DynamoDBClient, type DynamoDBClientConfig } from '@aws-sdk/client-dynamodb'
import { LambdaClient, type LambdaClientConfig } from '@aws-sdk/client-lambda'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { DynamoKeyStore } from '../adapters/dynamo-key-store'
import { LambdaSandbox } from '../adapters/lambda-sandbox'
import type { ApiConfig } from '../config'
import type { Clock, KeyStore, Sandbox } from '../core/ports'

export interface ApiDeps {
  config: ApiConfig
  sandbox: Sandbox
  keys: KeyStore
  clock: Clock
}

/** Client settings for local mode (endpoints and dummy credentials); empty when deployed. */
export interface ClientOverrides {
  lambda?: LambdaClientConfig
  dynamo?: DynamoDBClientConfig
}

/** The composition root: the same adapters deployed and locally (local passes endpoint overrides). */
export function createDeps(config: ApiConfig, overrides: ClientOverrides = {}): ApiDeps {
  const lambda = new LambdaClient({
    ...overrides.lambda,
    maxAttempts: 2,
    // The block's own limit plus room for the invoke and a cold start.
    requestHandler: { requestTimeout: config.codeTimeoutMs + 20_000, connectionTimeout: 5_000 },
  })
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ ...overrides.dynamo }), {
    marshallOptions: { removeUndefinedValues: true },
  })
  return {
    config,
    sandbox: new LambdaSandbox({
      client: lambda,
      functionName: config.sandboxFunctionName,
      tenantIsolation: config.tenantIsolation,
    }),
    keys: new DynamoKeyStore(doc, config.tableName),
    clock: { now: () => new Date() },
  }
}

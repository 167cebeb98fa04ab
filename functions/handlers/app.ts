import middy from '@middy/core'
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse'
import httpRouterHandler from '@middy/http-router'
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda'
import { ExecutionRequest } from '../contract/api'
import { assertOrganization, authenticate } from '../core/auth'
import { executeCode } from '../core/executions'
import type { ApiDeps } from './deps'
import { apiErrors, header, json, parseBody } from './http'

type Route = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>

/**
 * The API handler. It runs in Lambda's response-streaming mode because API Gateway's STREAM
 * integration serves every route (one function cannot be both); buffered answers are written
 * in one piece.
 */
export function createApiHandler(deps: ApiDeps) {
  const health: Route = async () => json(200, { status: 'ok', object: 'health' })

  const createExecution: Route = async (event) => {
    const caller = await authenticate(header(event, 'authorization'), deps.keys)
    const body = parseBody(event, ExecutionRequest)
    assertOrganization(caller, body.organization_id)
    const request = {
      ...body,
      timeout_ms: Math.min(body.timeout_ms ?? deps.config.codeTimeoutMs, deps.config.codeTimeoutMs),
    }
    return json(200, await executeCode(request, deps))
  }

  const router = httpRouterHandler([
    { method: 'GET', path: '/v1/health', handler: health },
    { method: 'POST', path: '/v1/executions', handler: createExecution },
  ] as never)

  return middy<APIGatewayProxyEvent, APIGatewayProxyResult>({ executionMode: executionModeStreamifyResponse })
    .use(apiErrors())
    .handler(router as never)
}

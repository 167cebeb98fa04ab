import middy from '@middy/core'
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse'
import httpRouterHandler from '@middy/http-router'
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda'
import { ExecutionRequest } from '../contract/api'
import { assertOrganization, authenticate } from '../core/auth'
import { executeCode } from '../core/executions'
import { newId } from '../core/ids'
import type { ApiDeps } from './deps'
import { apiErrors, header, json, parseBody } from './http'

type Route = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>

/**
 * The API handler. It runs in Lambda's response-streaming mode because API Gateway's STREAM
 * integration serves every route (one function cannot be both); buffered answers are written
 * in one piece.
 */
export function createApiHandler(deps: ApiDeps) {
  /** Without a key: liveness. With a key: also the sandbox's isolation layers, probed in the
   *  caller's own sandbox environment (the runner reports what this kernel granted). */
  const health: Route = async (event) => {
    const authorization = header(event, 'authorization')
    if (authorization === undefined) return json(200, { status: 'ok', object: 'health' })
    const caller = await authenticate(authorization, deps.keys)
    const probe = await deps.sandbox.run(
      { version: 1, action: 'probe', request_id: newId('health'), code: '' },
      { organizationId: caller.organizationId },
    )
    return json(200, { status: 'ok', object: 'health', sandbox: { layers: probe.layers, runtime: probe.zygote } })
  }

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

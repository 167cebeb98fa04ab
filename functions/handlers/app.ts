import middy from '@middy/core'
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse'
import httpRouterHandler from '@middy/http-router'
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda'
import { z } from 'zod'
import { ExecutionRequest } from '../contract/api'
import { AssistantCreate, AssistantUpdate, ResponseRequest, ScheduleName } from '../contract/responses'
import * as assistants from '../core/assistants'
import { assertOrganization, authenticate, type Caller } from '../core/auth'
import {
  backgroundNotAvailable,
  codeInterpreterNotAvailable,
  executionLimitReached,
  idempotentRequestInProgress,
  invalidRequest,
  responseAlreadyEnded,
} from '../core/errors'
import { readResponse, startBackground } from '../core/background'
import { settleStaleRun } from '../core/abandoned-runs'
import { executeCode } from '../core/executions'
import { hashApiKey, newId } from '../core/ids'
import { listResponses, prepareResponse } from '../core/responses'
import { eventStream } from './sse'
import { type ApiDeps, responsesDepsOf } from './deps'
import { fileRoutes } from './files'
import { apiErrors, describeIssue, header, json, parseBody } from './http'

type Route = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>

const ID = /^[A-Za-z0-9_-]{1,80}$/
const ListQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().regex(ID).optional(),
})

const ResponsesQuery = ListQuery.extend({ schedule: ScheduleName.optional() })

function pathId(event: APIGatewayProxyEvent): string {
  const id = event.pathParameters?.id ?? ''
  if (!ID.test(id)) throw invalidRequest('id: not a valid id')
  return id
}

/**
 * The API handler. It runs in Lambda's response-streaming mode because API Gateway's STREAM
 * integration serves every route (one function cannot be both); buffered answers are written
 * in one piece.
 */
export function createApiHandler(deps: ApiDeps) {
  const { config } = deps
  const caller = (event: APIGatewayProxyEvent): Promise<Caller> => authenticate(header(event, 'authorization'), deps.hot)
  const facts = { pythonVersion: config.pythonVersion, timeoutSeconds: Math.round(config.codeTimeoutMs / 1000) }

  /** Without a key: liveness. With a key: also the sandbox's isolation layers, probed in the
   *  caller's own sandbox environment (the runner reports what this kernel granted). */
  const health: Route = async (event) => {
    if (header(event, 'authorization') === undefined) return json(200, { status: 'ok', object: 'health' })
    const who = await caller(event)
    const probe = await deps.sandbox.run(
      { version: 1, action: 'probe', request_id: newId('health'), code: '' },
      { organizationId: who.organizationId },
    )
    const sandbox = { layers: probe.layers, ...(probe.refused ? { refused: probe.refused } : {}), runtime: probe.zygote }
    return json(200, { status: 'ok', object: 'health', sandbox })
  }

  const createExecution: Route = async (event) => {
    const who = await caller(event)
    const body = parseBody(event, ExecutionRequest)
    assertOrganization(who, body.organization_id)
    const org = await deps.hot.getOrganization(who.organizationId)
    const plan = config.plans[org?.plan ?? config.defaultPlan]
    if (!plan?.code_interpreter) throw codeInterpreterNotAvailable(org?.plan ?? config.defaultPlan)
    if (!(await deps.hot.tryConsumeExecution(who.organizationId, plan.max_executions_per_day, deps.clock.now()))) {
      throw executionLimitReached()
    }
    const request = { ...body, timeout_ms: Math.min(body.timeout_ms ?? config.codeTimeoutMs, config.codeTimeoutMs) }
    return json(200, await executeCode(request, { ...workspaceDeps, sandbox: deps.sandbox }, { sessionIdleDays: plan.session_idle_days, codeTimeoutMs: config.codeTimeoutMs }))
  }

  const responsesDeps = responsesDepsOf(deps)
  // Reading a background run past its time ends it failed (core/abandoned-runs.ts).
  const staleDeps = { store: deps.store, blobs: deps.blobs, clock: deps.clock, deadlineMs: config.responseDeadlineMs }
  const workspaceDeps = { files: deps.store, blobs: deps.blobs, sessions: deps.store, clock: deps.clock, slots: deps.slots }
  const filesDeps = { files: deps.store, blobs: deps.blobs, clock: deps.clock, maxFileBytes: config.fileMaxBytes, urlSeconds: config.presignedUrlSeconds }

  /** POST /v1/responses: answered at once (JSON), as a stream of events, or in the background. */
  const createResponseRoute: Route = async (event) => {
    const who = await caller(event)
    const body = parseBody(event, ResponseRequest)
    const prepared = await prepareResponse(who, body, responsesDeps)
    let responseId = newId('resp')
    const idempotencyKey = header(event, 'idempotency-key')
    if (idempotencyKey !== undefined) {
      if (!/^[\x21-\x7e]{1,255}$/.test(idempotencyKey)) throw invalidRequest('Idempotency-Key: 1 to 255 visible ASCII characters')
      const earlier = await deps.store.claimIdempotencyKey(who.organizationId, hashApiKey(idempotencyKey), responseId, deps.clock.now())
      if (earlier) {
        // A retry: the same response, never a second run.
        const found = await deps.store.getResponse(who.organizationId, earlier)
        if (!found) throw idempotentRequestInProgress()
        const stored = await settleStaleRun(found, staleDeps)
        return json(stored.status === 'queued' || stored.status === 'in_progress' ? 202 : 200, stored)
      }
    }
    if (body.background) {
      if (!deps.background) throw backgroundNotAvailable()
      // The session is taken now (a busy one is 409 here), the job stored, and only its ids dispatched.
      const job = { organizationId: who.organizationId, keyId: who.keyId, responseId, request: body, sessionId: prepared.sessionId }
      const queued = await startBackground(prepared, job, { store: deps.store, blobs: deps.blobs, background: deps.background })
      return json(202, queued)
    }
    if (body.stream) return eventStream((onEvent) => prepared.run({ onEvent, responseId }))
    return json(200, await prepared.run({ responseId }))
  }

  const cancelResponse: Route = async (event) => {
    const who = await caller(event)
    const id = pathId(event)
    const response = await readResponse(who, id, staleDeps)
    if (response.status !== 'queued' && response.status !== 'in_progress') throw responseAlreadyEnded(id, response.status)
    await deps.store.requestCancel(who.organizationId, id)
    return json(200, { ...response, cancel_requested: true })
  }

  const routes = [
    ...fileRoutes({
      files: filesDeps,
      sessions: { sessions: deps.store, blobs: deps.blobs, clock: deps.clock },
      caller,
      sessionIdleDays: async (org) => config.plans[(await deps.hot.getOrganization(org))?.plan ?? config.defaultPlan]?.session_idle_days ?? 7,
    }),
    { method: 'GET', path: '/v1/health', handler: health },
    { method: 'POST', path: '/v1/executions', handler: createExecution },
    {
      method: 'POST',
      path: '/v1/responses',
      handler: createResponseRoute,
    },
    { method: 'POST', path: '/v1/responses/{id}/cancel', handler: cancelResponse },
    {
      method: 'GET',
      path: '/v1/responses',
      handler: (async (event) => {
        const who = await caller(event)
        const query = ResponsesQuery.safeParse(event.queryStringParameters ?? {})
        if (!query.success) throw invalidRequest(describeIssue(query.error, 'query'))
        return json(200, await listResponses(who, deps.store, query.data))
      }) as Route,
    },
    {
      method: 'GET',
      path: '/v1/responses/{id}',
      handler: (async (event) => json(200, await readResponse(await caller(event), pathId(event), staleDeps))) as Route,
    },
    {
      method: 'POST',
      path: '/v1/assistants',
      handler: (async (event) => {
        const who = await caller(event)
        return json(200, await assistants.createAssistant(who, parseBody(event, AssistantCreate), deps.hot, deps.clock))
      }) as Route,
    },
    {
      method: 'GET',
      path: '/v1/assistants',
      handler: (async (event) => {
        const who = await caller(event)
        const query = ListQuery.safeParse(event.queryStringParameters ?? {})
        if (!query.success) throw invalidRequest(describeIssue(query.error, 'query'))
        return json(200, await assistants.listAssistants(who, deps.hot, query.data.limit, query.data.after))
      }) as Route,
    },
    {
      method: 'GET',
      path: '/v1/assistants/{id}',
      handler: (async (event) => json(200, await assistants.getAssistant(await caller(event), pathId(event), deps.hot))) as Route,
    },
    {
      method: 'POST',
      path: '/v1/assistants/{id}',
      handler: (async (event) => {
        const who = await caller(event)
        return json(200, await assistants.updateAssistant(who, pathId(event), parseBody(event, AssistantUpdate), deps.hot, deps.clock))
      }) as Route,
    },
    {
      method: 'DELETE',
      path: '/v1/assistants/{id}',
      handler: (async (event) => json(200, await assistants.deleteAssistant(await caller(event), pathId(event), deps.hot))) as Route,
    },
  ]

  return middy<APIGatewayProxyEvent, APIGatewayProxyResult>({ executionMode: executionModeStreamifyResponse })
    .use(apiErrors())
    .handler(httpRouterHandler(routes as never) as never)
}

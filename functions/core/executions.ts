import type { Execution, ExecutionRequest } from '../contract/api'
import { newId } from './ids'
import type { Clock, Sandbox } from './ports'
import { STATE_TOO_LARGE } from './responses'
import type { SessionStore } from './stores'

export interface ExecutionDeps {
  sandbox: Sandbox
  clock: Clock
  sessions: SessionStore
}

/** Runs one code block for the caller's organization. A failure of the user's code is a result. */
export async function executeCode(
  request: ExecutionRequest,
  deps: ExecutionDeps,
  signal?: AbortSignal,
): Promise<Execution> {
  const id = newId('exec')
  const createdAt = deps.clock.now()
  const session = request.session_id
  const result = await deps.sandbox.run(
    {
      version: 1,
      action: 'execute',
      request_id: id,
      code: request.code,
      limits: request.timeout_ms === undefined ? undefined : { timeout_ms: request.timeout_ms },
      ...(session ? { state: await deps.sessions.getSessionState(request.organization_id, session), want_state: true } : {}),
    },
    { organizationId: request.organization_id, signal },
  )
  const outputs = [...result.outputs]
  if (session && result.state !== undefined && !(await deps.sessions.putSessionState(request.organization_id, session, result.state, deps.clock.now()))) {
    outputs.push({ type: 'text', source: 'sandbox', text: `[${STATE_TOO_LARGE}]` })
  }
  return {
    id,
    object: 'execution',
    organization_id: request.organization_id,
    status: result.status,
    code: request.code,
    outputs,
    ...(session ? { session_id: session } : {}),
    output_dropped_bytes: result.output_dropped_bytes ?? 0,
    duration_ms: result.duration_ms,
    created_at: Math.floor(createdAt.getTime() / 1000),
  }
}

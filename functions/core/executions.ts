import type { Execution, ExecutionRequest } from '../contract/api'
import { resolveFiles } from './files'
import { newId } from './ids'
import type { Sandbox } from './ports'
import { liveSession, SESSION_LOST } from './sessions'
import { Workspace, type WorkspaceDeps } from './workspace'

export interface ExecutionDeps extends WorkspaceDeps {
  sandbox: Sandbox
}

/** Runs one code block for the caller's organization. A failure of the user's code is a result. */
export async function executeCode(
  request: ExecutionRequest,
  deps: ExecutionDeps,
  options: { sessionIdleDays: number; codeTimeoutMs: number },
  signal?: AbortSignal,
): Promise<Execution> {
  const id = newId('exec')
  const createdAt = deps.clock.now()
  const org = request.organization_id
  const [session, inputs] = await Promise.all([
    request.session_id ? liveSession(org, request.session_id, deps) : undefined,
    resolveFiles(org, request.file_ids ?? [], deps),
  ])
  const workspace = await Workspace.open(deps, {
    organizationId: org,
    inputs,
    session,
    claimSeconds: Math.ceil(options.codeTimeoutMs / 1000) + 60,
    source: { execution_id: id, ...(session ? { session_id: session.id } : {}) },
  })
  let result
  let outputs
  try {
    result = await deps.sandbox.run(
      {
        version: 1,
        action: 'execute',
        request_id: id,
        code: request.code,
        limits: request.timeout_ms === undefined ? undefined : { timeout_ms: request.timeout_ms },
        ...(await workspace.payload(session !== undefined)),
      },
      { organizationId: org, signal },
    )
    outputs = await workspace.settle(result)
    if (!(await workspace.persist(options.sessionIdleDays))) {
      outputs.push({ type: 'text', source: 'sandbox', text: `[${SESSION_LOST}]` })
    }
  } finally {
    await workspace.release()
  }
  return {
    id,
    object: 'execution',
    organization_id: org,
    status: result.status,
    code: request.code,
    outputs,
    ...(session ? { session_id: session.id } : {}),
    output_dropped_bytes: result.output_dropped_bytes ?? 0,
    duration_ms: result.duration_ms,
    created_at: Math.floor(createdAt.getTime() / 1000),
  }
}

import { build } from 'esbuild'
import { describe, expect, it } from 'vitest'
import { endFailedDelivery } from '../../functions/core/background'
import { createFailedRunsHandler, describeFailure, parseRecord } from '../../functions/handlers/failed-runs'
import { nodeFunctionProps } from '../../lib/constructs/service-function'

const ticket = { organizationId: 'org_a', responseId: 'resp_1' }
const record = (over: Record<string, unknown> = {}) => ({
  version: '1.0',
  timestamp: '2025-01-01T00:00:00.000Z',
  requestContext: { requestId: 'req-1', functionArn: 'arn:aws:lambda:us-east-1:1:function:w:$LATEST', condition: 'RetriesExhausted', approximateInvokeCount: 1 },
  requestPayload: ticket,
  responseContext: { statusCode: 200, executedVersion: '$LATEST', functionError: 'Unhandled' },
  responsePayload: { errorType: 'Sandbox.Timedout', errorMessage: 'Task timed out after 300.00 seconds' },
  ...over,
})

describe("the worker's failure records", () => {
  it('reads the ticket, the request id, the condition and what the invocation answered', () => {
    expect(parseRecord(JSON.stringify(record()))).toEqual({
      failure: { ticket, requestId: 'req-1', condition: 'RetriesExhausted', error: 'Sandbox.Timedout: Task timed out after 300.00 seconds' },
    })
    // A dropped event: no response at all.
    const expired = record({ requestContext: { requestId: 'req-2', condition: 'EventAgeExceeded', approximateInvokeCount: 0 }, responseContext: undefined, responsePayload: undefined })
    expect(parseRecord(JSON.stringify(expired))).toEqual({ failure: { ticket, requestId: 'req-2', condition: 'EventAgeExceeded' } })
    expect(describeFailure('Unhandled')).toBe('Unhandled')
    expect(describeFailure({ errorMessage: 'x'.repeat(1000) })).toHaveLength(300)
    expect(describeFailure({ other: 1 })).toBe('{"other":1}')
  })

  it('refuses what is not an invocation record of the worker, saying why', () => {
    expect(parseRecord('{')).toEqual({ invalid: 'not JSON' })
    expect(parseRecord(JSON.stringify(record({ requestPayload: { organizationId: 'org_a', responseId: 'resp_1', extra: true } })))).toHaveProperty('invalid')
    expect(parseRecord(JSON.stringify({ Records: [] }))).toHaveProperty('invalid')
  })

  it('retries a message only when the store failed or another delivery may still run it', async () => {
    const outcomes: Record<string, Awaited<ReturnType<typeof endFailedDelivery>>['status'] | Error> = {}
    const store = {
      getResponse: async (_org: string, id: string) => {
        const o = outcomes[id]
        if (o instanceof Error) throw o
        return o === 'running' ? { id, status: 'in_progress', organization_id: 'org_a', session_id: 's' } : undefined
      },
      abandonRun: async () => false,
    }
    outcomes.resp_1 = 'running'
    outcomes.resp_2 = new Error('ProvisionedThroughputExceededException')
    const handler = createFailedRunsHandler({ store: store as never, blobs: { delete: async () => undefined }, clock: { now: () => new Date() } }, () => undefined)
    const message = (id: string, body: string) => ({ messageId: id, body }) as never
    const answer = await handler({
      Records: [
        message('a', JSON.stringify(record())),
        message('b', JSON.stringify(record({ requestPayload: { organizationId: 'org_a', responseId: 'resp_2' } }))),
        message('c', JSON.stringify(record({ requestPayload: { organizationId: 'org_a', responseId: 'resp_3' } }))),
        message('d', 'garbage'),
      ],
    })
    expect(answer).toEqual({ batchItemFailures: [{ itemIdentifier: 'a' }, { itemIdentifier: 'b' }] })
  })

  it('bundles on its own, small: the table and the bucket clients, no model client', async () => {
    const props = nodeFunctionProps('functions/handlers/failed-runs.ts', { sourceMaps: false })
    const out = await build({
      entryPoints: [props.entry],
      bundle: true,
      write: false,
      platform: 'node',
      format: 'esm',
      target: props.bundling.target,
      mainFields: props.bundling.mainFields,
      banner: { js: props.bundling.banner },
      minify: true,
      logLevel: 'silent',
    })
    const code = out.outputFiles[0]!.text
    expect(code).toMatch(/export\s*\{[^}]*\bhandler\b/)
    expect(code).not.toMatch(/bedrock-runtime|BedrockRuntime/)
    expect(code.length).toBeLessThan(2_500_000)
  })
})

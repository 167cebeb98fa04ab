import type { APIGatewayProxyResult } from 'aws-lambda'
import { PassThrough } from 'node:stream'
import type { ResponseObject } from '../contract/responses'
import type { RunEvent } from '../core/run-loop'

type Run = (onEvent: (event: RunEvent) => void) => Promise<ResponseObject>

const FINAL = { completed: 'response.completed', incomplete: 'response.incomplete', failed: 'response.failed' } as const

/**
 * Runs the response and answers with server-sent events as it goes: one `event:` and one
 * `data:` JSON line per event, numbered by `sequence_number`. The run goes on and is stored even
 * when the client has gone away; the last event carries the whole response object.
 */
export function eventStream(run: Run): APIGatewayProxyResult {
  const stream = new PassThrough()
  let sequence = 0
  const send = (event: { type: string } & Record<string, unknown>) => {
    if (stream.writableEnded || stream.destroyed) return
    stream.write(`event: ${event.type}\ndata: ${JSON.stringify({ ...event, sequence_number: sequence++ })}\n\n`)
  }
  run((event) => send(event))
    .then((response) => send({ type: FINAL[response.status as keyof typeof FINAL] ?? 'response.completed', response }))
    .catch((error: Error) => send({ type: 'error', code: 'internal_error', message: error.message }))
    .finally(() => stream.end())
  return {
    statusCode: 200,
    headers: { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' },
    body: stream as unknown as string,
  }
}

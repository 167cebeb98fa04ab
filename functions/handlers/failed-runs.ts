/**
 * Lambda entry point of the worker's failure destination (lib/constructs/failed-runs.ts). Lambda
 * sends the record of every failed asynchronous invocation of the worker to an SQS queue: the
 * invocation threw, timed out, ran out of memory or crashed (`RetriesExhausted`; the worker is
 * never retried), or its event waited past the maximum event age and was dropped unrun
 * (`EventAgeExceeded`). This function reads those records and ends each run `failed` with its
 * session released (core/background.ts endFailedDelivery), so no background run is left
 * `queued` or `in_progress` by a worker that could not finish it.
 *
 * Each SQS message is one invocation record (docs.aws.amazon.com/lambda/latest/dg/
 * invocation-async-retain-records.html), its `requestPayload` the worker's event, the ticket
 * {organizationId, responseId}. A message is retried (a batch item failure) when the store
 * failed, or when another delivery of the same run may still be running it; one that is not an
 * invocation record of the worker is logged and dropped (retrying cannot help).
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { S3Client } from '@aws-sdk/client-s3'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda'
import { z } from 'zod'
import { DynamoStore } from '../adapters/dynamo-store'
import { S3BlobStore } from '../adapters/s3-blobs'
import { BackgroundTicket } from '../contract/background'
import { endFailedDelivery, type FailedDelivery } from '../core/background'
import type { BlobStore, Clock } from '../core/ports'
import type { ResponseStore, SessionStore } from '../core/stores'

/** The parts of Lambda's invocation record this handler reads. */
export const InvocationRecord = z.object({
  requestContext: z.object({ requestId: z.string().min(1), condition: z.string().min(1) }),
  requestPayload: BackgroundTicket,
  responsePayload: z.unknown().optional(),
})
export type InvocationRecord = z.infer<typeof InvocationRecord>

/** What the failed invocation answered, in one line: "errorType: errorMessage" (a timeout's is Lambda's "Task timed out after …"). */
export function describeFailure(payload: unknown): string | undefined {
  if (payload === undefined || payload === null) return undefined
  if (typeof payload === 'string') return payload.slice(0, 300) || undefined
  const { errorType, errorMessage } = payload as { errorType?: unknown; errorMessage?: unknown }
  const parts = [errorType, errorMessage].filter((p): p is string => typeof p === 'string' && p.length > 0)
  return (parts.length ? parts.join(': ') : JSON.stringify(payload)).slice(0, 300)
}

/** A message as the core takes it, or why it is not an invocation record of the worker. */
export function parseRecord(body: string): { failure: FailedDelivery } | { invalid: string } {
  let json: unknown
  try {
    json = JSON.parse(body)
  } catch {
    return { invalid: 'not JSON' }
  }
  const parsed = InvocationRecord.safeParse(json)
  if (!parsed.success) return { invalid: parsed.error.issues.map((i) => `${i.path.join('.') || 'record'}: ${i.message}`).join('; ') }
  const { requestContext, requestPayload, responsePayload } = parsed.data
  const error = describeFailure(responsePayload)
  return { failure: { ticket: requestPayload, requestId: requestContext.requestId, condition: requestContext.condition, ...(error ? { error } : {}) } }
}

export interface FailedRunsDeps {
  store: ResponseStore & SessionStore
  blobs: Pick<BlobStore, 'delete'>
  clock: Clock
}

export function createFailedRunsHandler(deps: FailedRunsDeps, log: (line: string) => void = console.log) {
  return async (event: SQSEvent): Promise<SQSBatchResponse> => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = []
    for (const message of event.Records) {
      const record = parseRecord(message.body)
      if ('invalid' in record) {
        log(JSON.stringify({ message_id: message.messageId, dropped: `not an invocation record of the worker (${record.invalid})` }))
        continue
      }
      try {
        const outcome = await endFailedDelivery(record.failure, deps)
        log(JSON.stringify({ message_id: message.messageId, condition: record.failure.condition, ...outcome }))
        if (outcome.status === 'running') batchItemFailures.push({ itemIdentifier: message.messageId })
      } catch (error) {
        log(JSON.stringify({ message_id: message.messageId, response_id: record.failure.ticket.responseId, retry: (error as Error).message }))
        batchItemFailures.push({ itemIdentifier: message.messageId })
      }
    }
    return { batchItemFailures }
  }
}

const Env = z.object({ TABLE_NAME: z.string().min(1), BUCKET_NAME: z.string().min(1) })

/** The deployed composition: the table and the bucket, nothing else (no sandbox, no model). */
export function createFailedRunsDeps(env: Record<string, string | undefined> = process.env): FailedRunsDeps {
  const { TABLE_NAME, BUCKET_NAME } = Env.parse(env)
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } })
  const s3 = new S3Client({ requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  return { store: new DynamoStore(doc, TABLE_NAME), blobs: new S3BlobStore(s3, BUCKET_NAME), clock: { now: () => new Date() } }
}

let deployed: ReturnType<typeof createFailedRunsHandler> | undefined
export const handler = (event: SQSEvent) => (deployed ??= createFailedRunsHandler(createFailedRunsDeps()))(event)

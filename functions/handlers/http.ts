import type { MiddlewareObj } from '@middy/core'
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda'
import type { z } from 'zod'
import { ApiError, invalidJson, invalidRequest } from '../core/errors'

const JSON_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }

export const json = (statusCode: number, body: unknown): APIGatewayProxyResult => ({
  statusCode,
  headers: JSON_HEADERS,
  body: JSON.stringify(body),
})

export function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  const wanted = name.toLowerCase()
  for (const [key, value] of Object.entries(event.headers ?? {})) {
    if (key.toLowerCase() === wanted) return value ?? undefined
  }
  return undefined
}

/** "field: message" for the first problem zod found; an unknown field is named itself. */
export function describeIssue(error: z.ZodError, whole: string): string {
  const issue = error.issues[0]!
  const path = issue.code === 'unrecognized_keys' ? [...issue.path, issue.keys.join(', ')] : issue.path
  return `${path.length ? path.join('.') : whole}: ${issue.message}`
}

/** Parses the JSON body and validates it with zod; every failure is a 400 naming the field. */
export function parseBody<T extends z.ZodType>(event: APIGatewayProxyEvent, schema: T): z.infer<T> {
  const text = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64').toString('utf8') : (event.body ?? '')
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (error) {
    throw invalidJson(text.trim() === '' ? 'the body is empty' : (error as Error).message)
  }
  const parsed = schema.safeParse(data)
  if (!parsed.success) {
    throw invalidRequest(describeIssue(parsed.error, 'body'), { issues: parsed.error.issues.map((i) => ({ path: i.path, message: i.message })) })
  }
  return parsed.data
}

/** The one place where errors become HTTP responses: {"error": {"code", "message"}}. */
export function apiErrors(log: (line: string) => void = console.error): MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    onError: async (request) => {
      const error = request.error as (Error & { statusCode?: number; expose?: boolean }) | null
      if (error instanceof ApiError) {
        request.response = json(error.statusCode, { error: { code: error.code, message: error.message } })
        return
      }
      // middy's own HTTP errors (route not found, method not allowed).
      if (error?.statusCode && error.statusCode < 500) {
        const code = error.statusCode === 404 ? 'not_found' : error.statusCode === 405 ? 'method_not_allowed' : 'bad_request'
        request.response = json(error.statusCode, { error: { code, message: error.message } })
        return
      }
      const requestId = request.context?.awsRequestId ?? 'unknown'
      log(`internal error (request ${requestId}): ${error?.stack ?? String(error)}`)
      request.response = json(500, { error: { code: 'internal_error', message: `Internal error (request ${requestId}).` } })
    },
  }
}

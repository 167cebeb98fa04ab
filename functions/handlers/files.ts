/** Routes of the files and sessions APIs: thin adapters over core/files and core/sessions. */
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda'
import { Readable } from 'node:stream'
import { z } from 'zod'
import { SessionCreate } from '../contract/api'
import { type FileDownload, FileId, UploadPurpose, UploadRequest } from '../contract/files'
import { OrganizationId, SessionId } from '../contract/ids'
import { SandboxFileName } from '../contract/sandbox'
import { assertOrganization, type Caller } from '../core/auth'
import { invalidRequest } from '../core/errors'
import * as files from '../core/files'
import * as sessions from '../core/sessions'
import { describeIssue, header, json, parseBody } from './http'
import { parseMultipart } from './multipart'

type Route = (event: APIGatewayProxyEvent) => Promise<APIGatewayProxyResult>

const FilesQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: FileId.optional(),
  purpose: z.enum(['assistants', 'user_data', 'assistants_output']).optional(),
})

const idFrom = <T extends z.ZodType<string>>(event: APIGatewayProxyEvent, schema: T): string => {
  const parsed = schema.safeParse(event.pathParameters?.id ?? '')
  if (!parsed.success) throw invalidRequest(describeIssue(parsed.error, 'id'))
  return parsed.data
}

const rawBody = (event: APIGatewayProxyEvent) => Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8')

/** A field of the form, validated like a JSON field would be. */
function field<T extends z.ZodType>(value: string | undefined, name: string, schema: T): z.infer<T> {
  const parsed = schema.safeParse(value)
  if (!parsed.success) throw invalidRequest(describeIssue(parsed.error, name).replace(/^[^:]*:/, `${name}:`))
  return parsed.data
}

export interface FileRoutesDeps {
  files: files.FilesDeps
  sessions: sessions.SessionsDeps
  caller: (event: APIGatewayProxyEvent) => Promise<Caller>
  /** The caller's plan's idle limit for sessions, in days. */
  sessionIdleDays: (organizationId: string) => Promise<number>
}

export function fileRoutes(deps: FileRoutesDeps) {
  const { caller } = deps
  /** A route on one object: the caller, the id from the path (validated), and a JSON answer. */
  const byId =
    (schema: z.ZodType<string>, use: (who: Caller, id: string) => Promise<unknown>): Route =>
    async (event) =>
      json(200, await use(await caller(event), idFrom(event, schema)))

  const upload: Route = async (event) => {
    const who = await caller(event)
    const parts = parseMultipart(rawBody(event), header(event, 'content-type'))
    const fileParts = parts.filter((p) => p.name === 'file')
    if (fileParts.length !== 1 || fileParts[0]!.filename === undefined) {
      throw invalidRequest('file: send exactly one part named "file" with a filename')
    }
    const text = (name: string) => parts.find((p) => p.name === name && p.filename === undefined)?.data.toString('utf8')
    const part = fileParts[0]!
    const file = await files.uploadFile(
      who,
      {
        organizationId: text('organization_id') === undefined ? undefined : field(text('organization_id'), 'organization_id', OrganizationId),
        filename: field(part.filename, 'filename', SandboxFileName),
        purpose: field(text('purpose'), 'purpose', UploadPurpose),
        mimeType: part.contentType,
        data: part.data,
      },
      deps.files,
    )
    return json(200, file)
  }

  const content: Route = async (event) => {
    const who = await caller(event)
    const content = await files.fileContent(who, idFrom(event, FileId), deps.files)
    if ('redirect' in content) {
      // Clients that follow redirects fetch the URL; the body says when it stops working.
      const { url, expiresAt } = content.redirect!
      const body: FileDownload = { object: 'file.download', url, expires_at: expiresAt }
      const redirect: APIGatewayProxyResult = json(307, body)
      redirect.headers = { ...redirect.headers, location: url }
      return redirect
    }
    const { file, body, bytes } = content
    return {
      statusCode: 200,
      headers: {
        'content-type': file.mime_type,
        'content-length': String(bytes),
        'content-disposition': files.contentDisposition(file.filename),
        'cache-control': 'no-store',
        'x-content-type-options': 'nosniff',
      },
      // middy's streaming mode pipes a stream body through as it is (binary safe).
      body: body as Readable as unknown as string,
    }
  }

  return [
    { method: 'POST', path: '/v1/files', handler: upload },
    {
      method: 'GET',
      path: '/v1/files',
      handler: (async (event) => {
        const who = await caller(event)
        const query = FilesQuery.safeParse(event.queryStringParameters ?? {})
        if (!query.success) throw invalidRequest(describeIssue(query.error, 'query'))
        return json(200, await files.listFiles(who, deps.files, query.data))
      }) as Route,
    },
    {
      method: 'POST',
      path: '/v1/files/uploads',
      handler: (async (event) => json(200, await files.createUpload(await caller(event), parseBody(event, UploadRequest), deps.files))) as Route,
    },
    {
      method: 'POST',
      path: '/v1/files/uploads/{id}/complete',
      handler: byId(FileId, (who, id) => files.completeUpload(who, id, deps.files)),
    },
    {
      method: 'GET',
      path: '/v1/files/{id}',
      handler: byId(FileId, (who, id) => files.getFile(who, id, deps.files)),
    },
    { method: 'GET', path: '/v1/files/{id}/content', handler: content },
    {
      method: 'DELETE',
      path: '/v1/files/{id}',
      handler: byId(FileId, (who, id) => files.deleteFile(who, id, deps.files)),
    },
    {
      method: 'POST',
      path: '/v1/sessions',
      handler: (async (event) => {
        const who = await caller(event)
        if ((event.body ?? '').trim() !== '') {
          assertOrganization(who, parseBody(event, SessionCreate).organization_id)
        }
        return json(200, await sessions.createSession(who, await deps.sessionIdleDays(who.organizationId), deps.sessions))
      }) as Route,
    },
    {
      method: 'GET',
      path: '/v1/sessions/{id}',
      handler: byId(SessionId, (who, id) => sessions.getSession(who, id, deps.sessions)),
    },
    {
      method: 'DELETE',
      path: '/v1/sessions/{id}',
      handler: byId(SessionId, (who, id) => sessions.deleteSession(who, id, deps.sessions)),
    },
  ]
}

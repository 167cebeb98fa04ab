/** Files: uploads, generated files, and the output items that name them. */
import { z } from 'zod'
import { OrganizationId } from './ids'
import { ErrorOutput, SandboxFileName, TextOutput } from './sandbox'

export const FileId = z.string().regex(/^file_[A-Za-z0-9_-]{1,64}$/, 'must look like file_<id>')
/** Files a request, an execution or an assistant makes readable to the code. */
export const MAX_FILE_IDS = 20
export const FileIds = z.array(FileId).max(MAX_FILE_IDS, `at most ${MAX_FILE_IDS} files`)

/** What a client may upload for; generated files get `assistants_output`. */
export const UploadPurpose = z.enum(['assistants', 'user_data'], { error: 'must be "assistants" or "user_data"' })
export type FilePurpose = z.infer<typeof UploadPurpose> | 'assistants_output'

export const MimeType = z
  .string()
  .max(255)
  .regex(/^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/, 'must be a media type like text/csv')

/** POST /v1/files/uploads: register a file, get a presigned URL to PUT its bytes to. */
export const UploadRequest = z
  .object({
    organization_id: OrganizationId.optional(),
    filename: SandboxFileName,
    purpose: UploadPurpose,
    bytes: z.int().min(0),
    mime_type: MimeType.optional(),
  })
  .strict()
export type UploadRequest = z.infer<typeof UploadRequest>

export interface FileObject {
  id: string
  object: 'file'
  organization_id: string
  filename: string
  bytes: number
  mime_type: string
  purpose: FilePurpose
  /** `pending` until the presigned upload is completed; only `processed` files can be used. */
  status: 'pending' | 'processed'
  created_at: number
  /** For generated files: where they came from. */
  source?: { session_id?: string; response_id?: string; execution_id?: string; call_id?: string }
}

/** POST /v1/files/uploads answers this. */
export interface FileUpload {
  object: 'file.upload'
  file: FileObject
  upload_url: string
  method: 'PUT'
  /**
   * When upload_url stops working (unix seconds, like every time in the API): the URL carries it
   * itself. PRESIGNED_URL_SECONDS after the request at most, sooner when the credentials that
   * signed it expire sooner.
   */
  expires_at: number
  complete_url: string
}

/** GET /v1/files/{id}/content of a file over 10 MB: the body of its 307 (`url` is also the Location). */
export interface FileDownload {
  object: 'file.download'
  url: string
  /** When `url` stops working (unix seconds), as for FileUpload. */
  expires_at: number
}

/** An image the code made (a matplotlib figure), stored as a file. */
export const ImageFileOutput = z
  .object({
    type: z.literal('image'),
    file_id: FileId,
    mime_type: z.string(),
    bytes: z.int().min(0),
    /** Small images also come inline, as a data: URL, so a client can show them at once. */
    url: z.string().optional(),
  })
  .strict()
/** A file the code wrote in its working directory, stored as a file. */
export const FileRefOutput = z
  .object({
    type: z.literal('file'),
    file_id: FileId,
    filename: z.string(),
    mime_type: z.string(),
    bytes: z.int().min(0),
  })
  .strict()

/** Output items as the API answers them: text and errors as the sandbox gave them, media as file ids. */
export const PublicOutputItem = z.discriminatedUnion('type', [TextOutput, ErrorOutput, ImageFileOutput, FileRefOutput])
export type PublicOutputItem = z.infer<typeof PublicOutputItem>

import { Duration, RemovalPolicy } from 'aws-cdk-lib'
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import * as s3 from 'aws-cdk-lib/aws-s3'
import { Construct } from 'constructs'

/** Uploaded and generated files: `files/<org>/<file_id>`. Kept until deleted through the API. */
export const FILES_PREFIX = 'files/'
/** Serialized Python session state: `state/<org>/<session>/...`. */
export const STATE_PREFIX = 'state/'
/** The prefixes every service function may touch (and the sandbox reach through its endpoint). */
export const OBJECT_PREFIXES = [FILES_PREFIX, STATE_PREFIX] as const
/**
 * Presigned uploads in flight: `uploads/<org>/<file_id>`. A client PUTs here (never to `files/`);
 * completing the upload checks the object and copies it to `files/`, so an upload URL that still
 * works afterwards cannot change a checked file. Only the API function may touch it (it signs
 * the URLs and completes them); the sandbox's endpoint never reaches it.
 */
export const UPLOADS_PREFIX = 'uploads/'
/**
 * What is left under `uploads/` (an upload never completed, or a PUT to a URL after its upload
 * was completed) expires after this: longer than any upload URL lives (PRESIGNED_URL_SECONDS is
 * 15 minutes by default; the API's credentials end a URL within hours anyway).
 */
export const STAGED_UPLOAD_EXPIRATION_DAYS = 1
/**
 * Backstop expiry of session state. A session expires after at most 30 idle days (a plan's
 * session_idle_days) and the API deletes its state then; this catches whatever it missed.
 */
export const STATE_EXPIRATION_DAYS = 35
/** Multipart uploads never completed (a client or the runner that gave up) are aborted after this. */
export const ABORT_INCOMPLETE_UPLOAD_DAYS = 1
export const TTL_ATTRIBUTE = 'expires_at'

/** Request headers a browser may send with a presigned PUT (checksums and SDK headers are x-amz-*). */
export const CORS_ALLOWED_HEADERS = ['content-type', 'content-md5', 'content-disposition', 'x-amz-*']
/** Response headers a browser may read: the ETag identifies what was stored. */
export const CORS_EXPOSED_HEADERS = ['ETag']

export interface StorageProps {
  /** How long S3 server access logs are kept. */
  readonly accessLogRetentionDays: number
  /** Browser origins allowed to use presigned URLs on the bucket (PUT, GET); empty = no CORS rule. */
  readonly corsOrigins?: readonly string[]
}

/**
 * All state: one DynamoDB table (organizations, keys, assistants, responses, sessions; single
 * table with pk/sk) and one bucket (`files/`: uploaded and generated files; `state/`: session
 * state; `uploads/`: presigned uploads not yet completed). Objects move through presigned URLs
 * signed by the service functions' roles: clients upload (to `uploads/`) and download with them,
 * and the sandbox's runner fetches inputs and stores outputs.
 */
export class Storage extends Construct {
  readonly table: dynamodb.TableV2
  readonly bucket: s3.Bucket

  constructor(scope: Construct, id: string, props: StorageProps) {
    super(scope, id)

    this.table = new dynamodb.TableV2(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billing: dynamodb.Billing.onDemand(),
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      // Epoch seconds; expiry is best-effort, so readers still filter on it.
      timeToLiveAttribute: TTL_ATTRIBUTE,
      removalPolicy: RemovalPolicy.RETAIN,
    })

    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(props.accessLogRetentionDays) }],
      removalPolicy: RemovalPolicy.RETAIN,
    })

    const corsOrigins = [...(props.corsOrigins ?? [])]
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      encryption: s3.BucketEncryption.S3_MANAGED,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: accessLogs,
      serverAccessLogsPrefix: 'data-bucket/',
      lifecycleRules: [
        { id: 'ExpireSessionState', prefix: STATE_PREFIX, expiration: Duration.days(STATE_EXPIRATION_DAYS) },
        { id: 'ExpireStagedUploads', prefix: UPLOADS_PREFIX, expiration: Duration.days(STAGED_UPLOAD_EXPIRATION_DAYS) },
        { id: 'AbortIncompleteUploads', abortIncompleteMultipartUploadAfter: Duration.days(ABORT_INCOMPLETE_UPLOAD_DAYS) },
      ],
      // Only for browsers uploading or downloading with presigned URLs; the URL is the credential.
      cors:
        corsOrigins.length > 0
          ? [
              {
                id: 'PresignedBrowserTransfers',
                allowedOrigins: corsOrigins,
                allowedMethods: [s3.HttpMethods.PUT, s3.HttpMethods.GET],
                allowedHeaders: CORS_ALLOWED_HEADERS,
                exposedHeaders: CORS_EXPOSED_HEADERS,
                maxAge: 3600,
              },
            ]
          : undefined,
      removalPolicy: RemovalPolicy.RETAIN,
    })
  }
}

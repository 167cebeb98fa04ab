import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'

export const LOCAL_BUCKET = 'interpreter-local'
/** s3rver's own fixed key pair (published in its source): for tests that start s3rver alone. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

/**
 * A key pair made for this process and registered with s3rver's account (it must know the key
 * id; it checks no SigV4 signature itself). Presigned URLs signed with it are what the S3 gate
 * (s3-gate.ts) admits, so their secret must not be one a sandboxed block could read in a source.
 */
export function newLocalS3Credentials(): { accessKeyId: string; secretAccessKey: string } {
  const credentials = { accessKeyId: `LOCAL${randomBytes(8).toString('hex').toUpperCase()}`, secretAccessKey: randomBytes(30).toString('base64url') }
  const account = createRequire(import.meta.url)('s3rver/lib/models/account.js') as {
    DUMMY_ACCOUNT: { createKeyPair(id: string, secret: string): void }
  }
  account.DUMMY_ACCOUNT.createKeyPair(credentials.accessKeyId, credentials.secretAccessKey)
  return credentials
}

/**
 * S3 for local mode: s3rver on loopback, storing objects under DATA_DIR/s3 (a temporary
 * directory, removed at stop, when nothing is persisted). Presigned URLs point here too, so
 * the local runner fetches and uploads large files exactly as it does against S3.
 */
export async function startLocalS3(dataDir: string | undefined): Promise<{ endpoint: string; stop(): Promise<void> }> {
  const directory = dataDir ? join(dataDir, 's3') : mkdtempSync(join(tmpdir(), 's3rver-'))
  mkdirSync(directory, { recursive: true })
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory,
    silent: true,
    configureBuckets: [{ name: LOCAL_BUCKET, configs: [] }],
  })
  const address = await server.run()
  return {
    endpoint: `http://127.0.0.1:${address.port}`,
    async stop() {
      await server.close()
      if (!dataDir) rmSync(directory, { recursive: true, force: true })
    },
  }
}

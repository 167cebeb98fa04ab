import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import S3rver from 's3rver'

export const LOCAL_BUCKET = 'interpreter-local'
/** s3rver checks signatures against its own fixed key pair. */
export const S3RVER_CREDENTIALS = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

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

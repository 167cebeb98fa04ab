import { chmodSync, cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sandboxTimeoutSeconds } from '../../lib/config'
import { loadApiConfig } from '../config'
import { createApiHandler } from '../handlers/app'
import type { DynamoStore } from '../adapters/dynamo-store'
import { hashApiKey, newApiKey, newId } from '../core/ids'
import type { ModelProvider } from '../core/model'
import type { BlobStore } from '../core/ports'
import { mostCapablePlan } from '../core/plans'
import { createDeps } from '../handlers/deps'
import { installLambdaStreamingGlobals, startApiServer } from './api-gateway'
import type { LocalConfig } from './config'
import { startLocalDynamo } from './dynamo'
import { LOCAL_BUCKET, newLocalS3Credentials, startLocalS3 } from './s3'
import { gatePort, startS3Gate } from './s3-gate'
import { bootstrapLocalKey } from './keys'
import { endpointUrl, startLambdaEndpoint } from './lambda-endpoint'
import { ensurePython } from './python-setup'
import { type Posture, WorkerPool } from './worker-pool'

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
const FUNCTION_NAME = 'sandbox'
export const LOCAL_TABLE = 'interpreter'
const TABLE_NAME = LOCAL_TABLE
/** While `npm start` runs, its DynamoDB endpoint (the admin command uses it: LevelDB has one owner). */
export const localDynamoEndpointFile = (dataDir: string) => join(dataDir, 'dynamodb.endpoint')
const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' }

export interface LocalService {
  url: string
  lambdaUrl: string
  organizationId: string
  /** Set when the key was given (LOCAL_API_KEY) or created by this start. */
  apiKey?: string
  keyCreated: boolean
  posture: Posture
  layers: Record<string, unknown>
  /** Layers the runner attempted and was refused, with the reason (e.g. by Lambda's seccomp profile). */
  refused: Record<string, string>
  python: string
  pool: WorkerPool
  /** Issues a new API key for an organization (shown once; stored hashed), creating the
   *  organization on LOCAL_PLAN (or the given plan) when it has no record. */
  issueKey(organizationId: string, plan?: string): Promise<string>
  model?: ModelProvider
  store: DynamoStore
  /** The local bucket (s3rver), as the API sees it. */
  blobs: BlobStore
  stop(): Promise<void>
}

/** Environment for the Python workers: the sandbox's own settings, never the server's secrets. */
function workerEnv(config: LocalConfig): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: 'C.UTF-8',
    CODE_TIMEOUT_MS: String(config.CODE_TIMEOUT_MS),
  }
  for (const [k, v] of Object.entries(process.env)) if (k.startsWith('SANDBOX_') && v !== undefined) env[k] = v
  // The runner's posture; the lambda posture's workers set theirs (lambda_env.py).
  env.SANDBOX_POSTURE = config.SANDBOX_POSTURE
  return env
}

/** A world-readable copy of python-runtime/ (without its tests) for workers under other uids. */
function publicRuntimeCopy(): string {
  const base = mkdtempSync(join(tmpdir(), 'sandbox-runtime-'))
  chmodSync(base, 0o755)
  const target = join(base, 'python-runtime')
  cpSync(join(PROJECT_ROOT, 'python-runtime'), target, {
    recursive: true,
    filter: (src) => !/[/\\](tests|__pycache__|\.pytest_cache)$/.test(src),
  })
  const open = (path: string) => {
    chmodSync(path, 0o755)
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name)
      if (entry.isDirectory()) open(full)
      else chmodSync(full, 0o644)
    }
  }
  open(target)
  return target
}

/**
 * DATA_DIR holds every organization's objects (s3rver), table (dynalite) and the key's hash:
 * sandboxed blocks run under other uids on this host, so only root (the server) may list it or
 * read what it stores. 0711 keeps the sandbox's venv (DATA_DIR/venv, 0755) reachable by path;
 * everything else in it is made 0700 (folders) or 0600 (files).
 */
function protectDataDir(dataDir: string): void {
  mkdirSync(dataDir, { recursive: true })
  chmodSync(dataDir, 0o711)
  for (const entry of readdirSync(dataDir, { withFileTypes: true })) {
    if (entry.name === 'venv') continue
    chmodSync(join(dataDir, entry.name), entry.isDirectory() ? 0o700 : 0o600)
  }
}

const close = (server: Server) => new Promise<void>((r) => server.close(() => r()))

/**
 * Everything `npm start` runs, in one process: the HTTP API, the local Lambda endpoint with its
 * warm Python workers, DynamoDB (dynalite) and S3 (s3rver). `persist: false` keeps the table in
 * memory and the objects in a temporary directory (tests).
 */
export async function startLocalService(
  config: LocalConfig,
  options: {
    log?: (line: string) => void
    persist?: boolean
    /** A model provider to use instead of the one the environment configures (null: none). */
    model?: ModelProvider | null
    /** Environment the model provider is read from (default process.env). */
    modelEnv?: Record<string, string | undefined>
  } = {},
): Promise<LocalService> {
  const log = options.log ?? ((line: string) => console.log(line))
  // Checked before anything starts: a refused start leaves nothing behind (no stale endpoint file).
  const posture = config.SANDBOX_POSTURE
  const workerUidBase = config.SANDBOX_WORKER_UID_BASE
  const root = process.getuid?.() === 0
  if (posture === 'lambda' && !root) {
    throw new Error('SANDBOX_POSTURE=lambda needs the server to run as root (it builds each worker\'s emulated Lambda environment, then drops to a uid); as another user, use SANDBOX_POSTURE=deployed')
  }
  if (posture === 'root' && !root) throw new Error('SANDBOX_POSTURE=root needs the server to run as root')
  if (workerUidBase !== undefined && !root) {
    throw new Error('SANDBOX_WORKER_UID_BASE needs the server to run as root (it starts workers as other uids)')
  }
  const python = ensurePython({ python: config.PYTHON, dataDir: config.DATA_DIR, root: PROJECT_ROOT, log })
  const persist = options.persist !== false
  if (persist) protectDataDir(config.DATA_DIR)
  const dynamo = await startLocalDynamo(persist ? join(config.DATA_DIR, 'dynamodb') : undefined, TABLE_NAME)
  if (persist) writeFileSync(localDynamoEndpointFile(config.DATA_DIR), dynamo.endpoint, { mode: 0o600 })
  const s3 = await startLocalS3(persist ? config.DATA_DIR : undefined)
  if (persist) protectDataDir(config.DATA_DIR) // the stores' folders, just made
  const s3Credentials = newLocalS3Credentials()
  // Lambda posture: blocks can open sockets (no seccomp inside Lambda), so S3 is reached only
  // through a gate that admits presigned URLs, as the VPC's endpoint and S3's signatures do.
  const gate = posture === 'lambda' ? await startS3Gate(Number(new URL(s3.endpoint).port), s3Credentials, 'us-east-1', log) : undefined
  // Workers under another uid may not be able to read a checkout under a private directory.
  const runtimeDir = workerUidBase === undefined ? join(PROJECT_ROOT, 'python-runtime') : publicRuntimeCopy()
  const pool = new WorkerPool({
    python,
    posture,
    workerUidBase,
    script: join(runtimeDir, 'local_worker.py'),
    lambda:
      posture === 'lambda'
        ? {
            script: join(runtimeDir, 'emulation', 'lambda_env.py'),
            functionName: FUNCTION_NAME,
            // The deployed function's timeout (lib/config.ts): the code's limit plus a margin.
            timeoutMs: sandboxTimeoutSeconds(config.CODE_TIMEOUT_MS) * 1000,
          }
        : undefined,
    size: config.SANDBOX_WORKERS,
    queueLimit: config.SANDBOX_QUEUE_LIMIT,
    env: {
      ...workerEnv(config),
      // Lambda posture: the environment's network holds only loopback; the local S3 (which the
      // runner's presigned URLs name) is reachable from inside, as through the VPC's S3 endpoint.
      // Inside, the S3 port the URLs name; outside, the gate in front of s3rver.
      ...(gate ? { SANDBOX_LAMBDA_FORWARD_PORTS: `${new URL(s3.endpoint).port}:${gatePort(gate)}` } : {}),
    },
    slotUidBase: config.SANDBOX_SLOT_UID_BASE,
    log,
  })
  let layers: Record<string, unknown>
  try {
    layers = await pool.start()
  } catch (error) {
    await pool.stop()
    await close(dynamo.server)
    await s3.stop()
    if (gate) await close(gate)
    if (persist) rmSync(localDynamoEndpointFile(config.DATA_DIR), { force: true })
    if (runtimeDir !== join(PROJECT_ROOT, 'python-runtime')) rmSync(dirname(runtimeDir), { recursive: true, force: true })
    throw error
  }
  const lambda = await startLambdaEndpoint(pool, FUNCTION_NAME, config.LAMBDA_PORT)
  const runtime = pool.runtime()
  const apiConfig = loadApiConfig({
    SANDBOX_FUNCTION_NAME: FUNCTION_NAME,
    SANDBOX_TENANT_ISOLATION: 'true',
    TABLE_NAME,
    CODE_TIMEOUT_MS: String(config.CODE_TIMEOUT_MS),
    SANDBOX_PYTHON_VERSION: String(runtime.python ?? '3.13').split('.').slice(0, 2).join('.'),
    PLANS_JSON: config.PLANS_JSON,
    MAX_CODE_BLOCKS_PER_RESPONSE: config.MAX_CODE_BLOCKS_PER_RESPONSE,
    RESPONSE_DEADLINE_MS: config.RESPONSE_DEADLINE_MS,
    KEY_CACHE_TTL_MS: config.KEY_CACHE_TTL_MS,
    USAGE_RESERVATION_BATCH: config.USAGE_RESERVATION_BATCH,
    BUCKET_NAME: LOCAL_BUCKET,
    FILE_MAX_BYTES: config.FILE_MAX_BYTES,
  })
  const localPlan = config.LOCAL_PLAN ?? mostCapablePlan(apiConfig.plans)
  if (!apiConfig.plans[localPlan]) throw new Error(`LOCAL_PLAN "${localPlan}" is not one of the plans: ${Object.keys(apiConfig.plans).join(', ')}`)
  const deps = createDeps(
    apiConfig,
    {
      lambda: { endpoint: endpointUrl(lambda), region: 'us-east-1', credentials: LOCAL_CREDENTIALS },
      dynamo: { endpoint: dynamo.endpoint, region: 'us-east-1', credentials: LOCAL_CREDENTIALS },
      s3: { endpoint: s3.endpoint, region: 'us-east-1', credentials: s3Credentials, forcePathStyle: true },
      model: options.model,
      inProcessBackground: true,
    },
    options.modelEnv ?? process.env,
  )
  const ensureOrganization = async (id: string, plan = localPlan) => {
    const existing = await deps.store.getOrganization(id)
    if (!existing || (id === config.LOCAL_ORGANIZATION_ID && existing.plan !== plan)) {
      await deps.store.putOrganization({ id, plan, created_at: existing?.created_at ?? Math.floor(Date.now() / 1000) })
    }
  }
  await ensureOrganization(config.LOCAL_ORGANIZATION_ID)
  const key = await bootstrapLocalKey({
    keys: deps.store,
    dataDir: config.DATA_DIR,
    organizationId: config.LOCAL_ORGANIZATION_ID,
    apiKey: config.LOCAL_API_KEY,
    log,
  })
  installLambdaStreamingGlobals()
  const api = await startApiServer(createApiHandler(deps) as never, config.PORT, log)
  return {
    url: `http://127.0.0.1:${(api.address() as AddressInfo).port}`,
    lambdaUrl: endpointUrl(lambda),
    organizationId: config.LOCAL_ORGANIZATION_ID,
    apiKey: key.apiKey,
    keyCreated: key.created,
    posture,
    layers,
    refused: pool.refused(),
    python,
    pool,
    model: deps.model,
    store: deps.store,
    blobs: deps.blobs,
    async issueKey(organizationId: string, plan?: string) {
      await ensureOrganization(organizationId, plan)
      const apiKey = newApiKey()
      await deps.store.put(hashApiKey(apiKey), { organizationId, keyId: newId('key') })
      return apiKey
    },
    async stop() {
      if (persist) rmSync(localDynamoEndpointFile(config.DATA_DIR), { force: true })
      await pool.stop()
      api.closeAllConnections()
      lambda.closeAllConnections()
      await Promise.all([close(api), close(lambda), close(dynamo.server), s3.stop(), ...(gate ? [close(gate)] : [])])
      if (runtimeDir !== join(PROJECT_ROOT, 'python-runtime')) rmSync(dirname(runtimeDir), { recursive: true, force: true })
    },
  }
}

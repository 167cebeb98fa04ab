import { ModelError } from '../../core/model'

export interface RetryPolicy {
  /** Total tries, the first included. @default 4 */
  maxAttempts: number
  /** Delay before the first retry; doubles each time, with jitter. @default 500 */
  baseDelayMs: number
  /** Cap on a single delay. @default 8000 */
  maxDelayMs: number
}

export const DEFAULT_RETRY: RetryPolicy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 8_000 }

export function retryPolicy(options: Partial<RetryPolicy>): RetryPolicy {
  const policy: RetryPolicy = {
    maxAttempts: options.maxAttempts ?? DEFAULT_RETRY.maxAttempts,
    baseDelayMs: options.baseDelayMs ?? DEFAULT_RETRY.baseDelayMs,
    maxDelayMs: options.maxDelayMs ?? DEFAULT_RETRY.maxDelayMs,
  }
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) throw new Error('maxAttempts must be an integer ≥ 1')
  if (policy.baseDelayMs < 0 || policy.maxDelayMs < 0) throw new Error('retry delays must be ≥ 0')
  return policy
}

/** What a failed attempt means: retry it, or give up with this message. */
export interface Failure {
  retryable: boolean
  message: string
  /** Server-suggested wait (Retry-After), used when within maxDelayMs. */
  retryAfterMs?: number
}

/**
 * Runs `attempt` until it succeeds, a failure is not retryable, or attempts run out.
 * Exponential backoff with "equal jitter" (half fixed, half random), as AWS advises for 5xx
 * and throttling. An aborted signal ends the loop with the signal's reason, like fetch does.
 */
export async function withRetry<T>(
  policy: RetryPolicy,
  signal: AbortSignal | undefined,
  attempt: () => Promise<T>,
  classify: (error: unknown) => Failure,
): Promise<T> {
  for (let n = 1; ; n++) {
    signal?.throwIfAborted()
    try {
      return await attempt()
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      if (error instanceof ModelError) throw error
      const failure = classify(error)
      if (!failure.retryable) throw new ModelError(failure.message, false)
      if (n >= policy.maxAttempts) {
        throw new ModelError(`${failure.message} (gave up after ${n} attempt${n === 1 ? '' : 's'})`, true)
      }
      await sleep(delayFor(policy, n, failure.retryAfterMs), signal)
    }
  }
}

function delayFor(policy: RetryPolicy, attempt: number, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined && retryAfterMs >= 0 && retryAfterMs <= policy.maxDelayMs) return retryAfterMs
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1))
  return ceiling / 2 + Math.random() * (ceiling / 2)
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = () => {
      clearTimeout(timer)
      reject(signal?.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Network-level failures (no HTTP answer) worth another try. */
const TRANSIENT_CODES = new Set([
  'ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT',
  // A reset stream or a closing session; not ERR_HTTP2_ERROR, which is a peer that does not speak HTTP/2.
  'ERR_HTTP2_STREAM_ERROR', 'ERR_HTTP2_GOAWAY_SESSION', 'ERR_HTTP2_SESSION_ERROR', 'ERR_HTTP2_STREAM_CANCEL', 'ERR_HTTP2_INVALID_SESSION',
])

export function isNetworkError(error: unknown): boolean {
  for (let e: any = error, depth = 0; e && depth < 4; e = e.cause, depth++) {
    const code = typeof e.code === 'string' ? e.code : ''
    if (TRANSIENT_CODES.has(code)) return true
    if (e.name === 'TimeoutError') return true
  }
  return false
}

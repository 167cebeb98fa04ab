import { InvokeCommand, LambdaClient, TooManyRequestsException } from '@aws-sdk/client-lambda'
import { SandboxPayload, SandboxResult } from '../contract/sandbox'
import { SandboxBusyError, SandboxProtocolError, SandboxUnavailableError } from '../core/errors'
import type { Sandbox } from '../core/ports'

/** Lambda's synchronous response limit; a larger answer cannot be a valid result. */
const MAX_RESULT_BYTES = 6 * 1024 * 1024

export interface LambdaSandboxOptions {
  client: LambdaClient
  functionName: string
  /** Send TenantId = organization id (Lambda tenant isolation mode). @default true */
  tenantIsolation: boolean
  /** The client's whole-invoke timeout, named when an invoke times out. */
  invokeTimeoutMs?: number
}

/** The client gave up waiting (its request timeout), as @smithy/node-http-handler reports it. */
const isRequestTimeout = (error: unknown) => {
  const e = error as { name?: string; code?: string }
  return e.name === 'TimeoutError' && e.code === 'ETIMEDOUT'
}

/** The sandbox port over Lambda Invoke: the same code deployed and locally (local endpoint). */
export class LambdaSandbox implements Sandbox {
  constructor(private readonly options: LambdaSandboxOptions) {}

  async run(payload: SandboxPayload, { organizationId, signal }: { organizationId: string; signal?: AbortSignal }) {
    const body = SandboxPayload.parse(payload)
    let out
    try {
      out = await this.options.client.send(
        new InvokeCommand({
          FunctionName: this.options.functionName,
          InvocationType: 'RequestResponse',
          Payload: Buffer.from(JSON.stringify(body)),
          TenantId: this.options.tenantIsolation ? organizationId : undefined,
        }),
        { abortSignal: signal },
      )
    } catch (error) {
      if (error instanceof TooManyRequestsException || (error as { name?: string }).name === 'TooManyRequestsException') {
        throw new SandboxBusyError()
      }
      if (isRequestTimeout(error)) {
        const within = this.options.invokeTimeoutMs === undefined ? '' : ` within ${this.options.invokeTimeoutMs / 1000} s`
        throw new SandboxUnavailableError(
          `The sandbox did not answer${within} (the block's time limit, the sandbox's margin and a cold start). The block may have run; ` +
            'it was not run again, its outputs are lost, and a session keeps its state from before the block.',
        )
      }
      throw new SandboxUnavailableError(`The sandbox could not be invoked: ${(error as Error).message}`)
    }
    const raw = out.Payload ?? new Uint8Array()
    if (raw.byteLength > MAX_RESULT_BYTES) throw new SandboxProtocolError('The sandbox result is larger than allowed.')
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(raw).toString('utf8'))
    } catch {
      throw new SandboxProtocolError('The sandbox returned a result that is not JSON.')
    }
    if (out.FunctionError) {
      const detail = parsed as { errorType?: string; errorMessage?: string }
      throw new SandboxUnavailableError(
        `The sandbox failed (${String(detail?.errorType ?? out.FunctionError).slice(0, 100)}): ` +
          String(detail?.errorMessage ?? '').slice(0, 500),
      )
    }
    const result = SandboxResult.safeParse(parsed)
    if (!result.success) {
      throw new SandboxProtocolError(`The sandbox result breaks the contract: ${result.error.issues[0]?.message}`)
    }
    return result.data
  }
}

import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda'
import type { BackgroundRuns, BackgroundTicket } from '../core/background'

/**
 * Deployed background runs: an asynchronous invoke of the worker function with the run's ticket
 * (two ids; the job itself is stored, core/background.ts). Lambda answers 202 once the event is
 * queued; any error here means the run was not dispatched.
 */
export class LambdaBackground implements BackgroundRuns {
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {}

  async start(ticket: BackgroundTicket): Promise<void> {
    await this.client.send(
      new InvokeCommand({ FunctionName: this.functionName, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(ticket)) }),
    )
  }
}

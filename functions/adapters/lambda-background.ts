import { InvokeCommand, type LambdaClient } from '@aws-sdk/client-lambda'
import type { BackgroundJob, BackgroundRuns } from '../core/background'

/** Deployed background runs: an asynchronous invoke of the worker function with the job. */
export class LambdaBackground implements BackgroundRuns {
  constructor(
    private readonly client: LambdaClient,
    private readonly functionName: string,
  ) {}

  async start(job: BackgroundJob): Promise<void> {
    await this.client.send(
      new InvokeCommand({ FunctionName: this.functionName, InvocationType: 'Event', Payload: Buffer.from(JSON.stringify(job)) }),
    )
  }
}

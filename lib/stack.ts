import { CfnOutput, Duration, Stack, type StackProps, Validations } from 'aws-cdk-lib'
import type * as logs from 'aws-cdk-lib/aws-logs'
import type { Construct } from 'constructs'
import { type InterpreterConfig, sandboxTimeoutSeconds } from './config'
import { ApiFunction } from './constructs/api-function'
import { SandboxDnsFirewall } from './constructs/dns-firewall'
import { SandboxNetwork } from './constructs/network'
import { SandboxAlarms } from './constructs/operations'
import { InterpreterApi } from './constructs/rest-api'
import { SandboxFunction } from './constructs/sandbox'
import { SandboxS3Access } from './constructs/sandbox-s3-access'
import { Schedules } from './constructs/schedules'
import { Storage } from './constructs/storage'
import { WorkerFunction } from './constructs/worker'

export interface InterpreterStackProps extends StackProps {
  readonly config: InterpreterConfig
  /** Override the sandbox image directory (python-runtime/ by default). */
  readonly sandboxImageDirectory?: string
}

/**
 * The whole service. Environment-agnostic on purpose (no `env`): synth needs no AWS lookups.
 * Scheduled analyses (and their function, queue and group) exist only when cdk.json lists some.
 */
export class InterpreterStack extends Stack {
  constructor(scope: Construct, id: string, props: InterpreterStackProps) {
    super(scope, id, props)
    const { config } = props
    // Validated by the config schema, so it is a value CloudWatch accepts.
    const logRetention = config.logRetentionDays as logs.RetentionDays

    const network = new SandboxNetwork(this, 'Network', { logRetention })
    const dnsFirewall = new SandboxDnsFirewall(this, 'DnsFirewall', { vpc: network.vpc })
    const sandbox = new SandboxFunction(this, 'Sandbox', {
      config: config.sandbox,
      vpc: network.vpc,
      securityGroup: network.securityGroup,
      logRetention,
      imageDirectory: props.sandboxImageDirectory,
    })
    // On a fresh deploy, no sandbox exists before the resolver is filtered.
    sandbox.function.node.addDependency(dnsFirewall)
    const storage = new Storage(this, 'Storage', {
      accessLogRetentionDays: config.logRetentionDays,
      corsOrigins: config.files.corsOrigins,
    })
    // The admin command (`npm run admin -- ... --table <name>`) needs the table's name.
    new CfnOutput(this, 'TableName', { value: storage.table.tableName, description: 'DynamoDB table for npm run admin --table' })
    // Background responses: the API invokes the worker asynchronously, once per run.
    const worker = new WorkerFunction(this, 'Worker', {
      config,
      sandbox: sandbox.function,
      table: storage.table,
      bucket: storage.bucket,
      logRetention,
    })
    const api = new ApiFunction(this, 'Api', {
      config,
      sandbox: sandbox.function,
      table: storage.table,
      bucket: storage.bucket,
      logRetention,
      worker: worker.function,
    })
    new InterpreterApi(this, 'RestApi', { handler: api.function, config, logRetention, table: storage.table })
    const schedules =
      config.schedules.length > 0
        ? new Schedules(this, 'Schedules', {
            config,
            sandbox: sandbox.function,
            table: storage.table,
            bucket: storage.bucket,
            logRetention,
          })
        : undefined
    // The sandbox reaches the bucket only with URLs these functions signed (never with its own role).
    new SandboxS3Access(this, 'SandboxS3Access', {
      vpc: network.vpc,
      securityGroup: network.securityGroup,
      bucket: storage.bucket,
      logRetention,
      signers: [api.role, worker.role, ...(schedules ? [schedules.runner.role] : [])],
    })
    new SandboxAlarms(this, 'Alarms', {
      sandbox: sandbox.function,
      timeout: Duration.seconds(sandboxTimeoutSeconds(config.sandbox.codeTimeoutMs)),
    })
  }
}

import { CfnOutput, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib'
import * as apigw from 'aws-cdk-lib/aws-apigateway'
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'
import { UsagePlans } from './usage-plans'

/**
 * Request bodies of these types reach the function base64-encoded (`isBase64Encoded: true`), so
 * file uploads arrive byte for byte. JSON stays text. The STREAM integration returns the
 * function's bytes as they are, so responses need no binary setting.
 */
export const BINARY_MEDIA_TYPES = ['multipart/form-data', 'application/octet-stream']

export interface InterpreterApiProps {
  readonly handler: lambda.IFunction
  readonly config: InterpreterConfig
  readonly logRetention: logs.RetentionDays
  /** The table the authorizer reads API keys and organizations from. */
  readonly table: dynamodb.ITableV2
}

/**
 * The public REST API in front of the API function.
 *
 * Authentication: every method but `GET /v1/health` goes through a Lambda REQUEST authorizer
 * that checks `Authorization: Bearer <key>` against the hashed keys in the table and selects the
 * usage plan of the organization's plan (see UsagePlans). The API function still checks the key
 * itself with the same code, so the local server (no API Gateway) enforces the same rule.
 *
 * Transfer mode: every route uses the STREAM integration. The function exports one handler,
 * and a handler is either streaming (it writes the status/headers prelude) or buffered; Lambda
 * cannot serve both shapes, so all routes share the mode `/v1/responses` needs.
 *
 * Routes: the hot paths are explicit so they get their own request validation and per-method
 * metrics; the rest (assistants, files, sessions, ...) go through `/v1/{proxy+}` and the
 * function's router, which answers 404 for anything it does not serve. The proxy route has no
 * request validator or model, so multipart and binary bodies (file uploads) pass unchanged.
 */
export class InterpreterApi extends Construct {
  readonly api: apigw.RestApi
  readonly usagePlans: UsagePlans

  constructor(scope: Construct, id: string, props: InterpreterApiProps) {
    super(scope, id)
    const { throttling } = props.config

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', { retention: props.logRetention })
    this.api = new apigw.RestApi(this, 'Api', {
      description: 'Serverless code interpreter',
      // Regional: an edge-optimized endpoint cuts streams after 30 s idle, Regional after 5 min.
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      // Stage logging (the access logs below) needs the account's API Gateway CloudWatch Logs
      // role, or the stage fails to deploy on an account that has none. CDK creates the role
      // and AWS::ApiGateway::Account, and makes the stage depend on the latter. Retained on
      // stack deletion: the setting is per account and Region, other APIs may log through it.
      cloudWatchRole: props.config.api.cloudWatchRole,
      cloudWatchRoleRemovalPolicy: props.config.api.cloudWatchRole ? RemovalPolicy.RETAIN : undefined,
      // The authorizer names the usage plan (its usageIdentifierKey); clients send no x-api-key.
      apiKeySourceType: apigw.ApiKeySourceType.AUTHORIZER,
      binaryMediaTypes: BINARY_MEDIA_TYPES,
      deployOptions: {
        stageName: 'prod',
        throttlingRateLimit: throttling.rateLimit,
        throttlingBurstLimit: throttling.burstLimit,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
        metricsEnabled: true,
      },
    })

    // Binary media types take effect with the next deployment, and CDK does not hash them into
    // the deployment's logical id: a change to the list must create a new deployment.
    this.api.latestDeployment?.addToLogicalId({ binaryMediaTypes: BINARY_MEDIA_TYPES })

    this.usagePlans = new UsagePlans(this, 'UsagePlans', {
      api: this.api,
      plans: props.config.plans,
      table: props.table,
      logRetention: props.logRetention,
      sourceMaps: props.config.api.sourceMaps,
    })
    const gated: apigw.MethodOptions = {
      authorizer: this.usagePlans.authorizer,
      authorizationType: apigw.AuthorizationType.CUSTOM,
      apiKeyRequired: true,
    }
    // The authorizer's 401 and the usage plans' 429 in the API's own error shape.
    const errorBody = (code: string, message: string) => ({
      'application/json': JSON.stringify({ error: { code, message } }),
    })
    this.api.addGatewayResponse('Unauthorized', {
      type: apigw.ResponseType.UNAUTHORIZED,
      statusCode: '401',
      templates: errorBody('unauthorized', 'Missing or invalid API key. Send "Authorization: Bearer <key>".'),
    })
    this.api.addGatewayResponse('QuotaExceeded', {
      type: apigw.ResponseType.QUOTA_EXCEEDED,
      statusCode: '429',
      templates: errorBody('quota_exceeded', "The daily request quota of this organization's plan is used up."),
    })
    this.api.addGatewayResponse('Throttled', {
      type: apigw.ResponseType.THROTTLED,
      statusCode: '429',
      templates: errorBody('rate_limited', 'Too many requests; retry shortly.'),
    })

    const validator = this.api.addRequestValidator('Validator', {
      validateRequestBody: true,
      validateRequestParameters: true,
    })
    const jsonObject = this.api.addModel('JsonObject', {
      contentType: 'application/json',
      schema: { schema: apigw.JsonSchemaVersion.DRAFT4, type: apigw.JsonSchemaType.OBJECT },
    })
    const jsonBody: apigw.MethodOptions = {
      requestValidator: validator,
      requestModels: { 'application/json': jsonObject },
    }

    const integration = new apigw.LambdaIntegration(props.handler, {
      responseTransferMode: apigw.ResponseTransferMode.STREAM,
      // A streamed route may run up to the function's own timeout (at most 15 min).
      timeout: Duration.seconds(props.config.api.timeoutSeconds),
      allowTestInvoke: false,
    })
    const route = (resource: apigw.IResource, method: string, options: apigw.MethodOptions = {}) =>
      resource.addMethod(method, integration, { ...gated, ...options })

    const v1 = this.api.root.addResource('v1')
    // Public on purpose (load balancers, uptime checks): no authorizer, no usage plan.
    route(v1.addResource('health'), 'GET', { authorizationType: apigw.AuthorizationType.NONE, authorizer: undefined, apiKeyRequired: false })
    route(v1.addResource('executions'), 'POST', jsonBody)
    const responses = v1.addResource('responses')
    route(responses, 'POST', jsonBody)
    route(responses, 'GET') // list, e.g. ?schedule=NAME
    route(responses.addResource('{id}'), 'GET', {
      requestValidator: validator,
      requestParameters: { 'method.request.path.id': true },
    })
    // Everything else, e.g. /v1/assistants, /v1/files (multipart uploads), /v1/files/{id}/content,
    // /v1/files/uploads/{id}/complete, /v1/sessions/{id}: no validator, any body type.
    route(v1.addResource('{proxy+}'), 'ANY')

    Validations.of(this.api).acknowledge(
      {
        id: 'AwsSolutions-APIG4',
        reason:
          'Every method but GET /v1/health uses the Lambda REQUEST authorizer (hashed API keys in DynamoDB, Authorization: Bearer); /v1/health is public on purpose for uptime checks',
      },
      {
        id: 'AwsSolutions-COG4',
        reason: 'Clients are applications holding API keys, not Cognito users',
      },
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'No WAF by default (cost per deployment); stage throttling, per-plan usage plans and per-organization limits in the API function bound abuse. A team can associate its own web ACL with the stage',
      },
      {
        id: 'AwsSolutions-APIG6',
        reason:
          'Execution logging stays off: API Gateway writes it to log groups it creates itself (API-Gateway-Execution-Logs_<id>/<stage>), outside this stack and its retention; access logs record every request and the functions log their errors',
      },
    )
    const cloudWatchRole = this.api.node.tryFindChild('CloudWatchRole')
    if (cloudWatchRole) {
      Validations.of(cloudWatchRole).acknowledge({
        id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
        reason:
          "The account-wide API Gateway CloudWatch Logs role serves every REST API of the account and Region, so it cannot be scoped to this stack's log groups; AWS's own service-role policy for it is the documented choice",
      })
    }

    const url = new CfnOutput(this, 'Url', {
      value: this.api.urlForPath('/v1'),
      description: 'Base URL of the code interpreter API',
    })
    // A fixed name the deploy guide and bin/schedule.ts can refer to.
    url.overrideLogicalId('ApiUrl')
  }
}

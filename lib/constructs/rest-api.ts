import { CfnOutput, Duration, Validations } from 'aws-cdk-lib'
import * as apigw from 'aws-cdk-lib/aws-apigateway'
import type * as lambda from 'aws-cdk-lib/aws-lambda'
import * as logs from 'aws-cdk-lib/aws-logs'
import { Construct } from 'constructs'
import type { InterpreterConfig } from '../config'

export interface InterpreterApiProps {
  readonly handler: lambda.IFunction
  readonly config: InterpreterConfig
  readonly logRetention: logs.RetentionDays
}

/**
 * The public REST API in front of the API function.
 *
 * Authentication: the API function checks `Authorization: Bearer <key>` against the hashed keys
 * in the table, so no method uses an API Gateway authorizer. One place owns keys, plans and
 * organizations, and the local server (no API Gateway) enforces exactly the same rule.
 *
 * Transfer mode: every route uses the STREAM integration. The function exports one handler,
 * and a handler is either streaming (it writes the status/headers prelude) or buffered; Lambda
 * cannot serve both shapes, so all routes share the mode `/v1/responses` needs.
 *
 * Routes: the hot paths are explicit so they get their own request validation and per-method
 * metrics; the rest (assistants, files, ...) go through `/v1/{proxy+}` and the function's router,
 * which answers 404 for anything it does not serve.
 */
export class InterpreterApi extends Construct {
  readonly api: apigw.RestApi

  constructor(scope: Construct, id: string, props: InterpreterApiProps) {
    super(scope, id)
    const { throttling } = props.config

    const accessLogs = new logs.LogGroup(this, 'AccessLogs', { retention: props.logRetention })
    this.api = new apigw.RestApi(this, 'Api', {
      description: 'Serverless code interpreter',
      // Regional: an edge-optimized endpoint cuts streams after 30 s idle, Regional after 5 min.
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      cloudWatchRole: false,
      deployOptions: {
        stageName: 'prod',
        throttlingRateLimit: throttling.rateLimit,
        throttlingBurstLimit: throttling.burstLimit,
        accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
        accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
        metricsEnabled: true,
      },
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
      resource.addMethod(method, integration, {
        authorizationType: apigw.AuthorizationType.NONE,
        ...options,
      })

    const v1 = this.api.root.addResource('v1')
    route(v1.addResource('health'), 'GET')
    route(v1.addResource('executions'), 'POST', jsonBody)
    const responses = v1.addResource('responses')
    route(responses, 'POST', jsonBody)
    route(responses, 'GET') // list, e.g. ?schedule=NAME
    route(responses.addResource('{id}'), 'GET', {
      requestValidator: validator,
      requestParameters: { 'method.request.path.id': true },
    })
    route(v1.addResource('{proxy+}'), 'ANY')

    Validations.of(this.api).acknowledge(
      {
        id: 'AwsSolutions-APIG4',
        reason:
          'Authorization is done by the API function against hashed API keys in DynamoDB (Authorization: Bearer), identically in local mode; /v1/health is public on purpose',
      },
      {
        id: 'AwsSolutions-COG4',
        reason: 'Clients are applications holding API keys, not Cognito users',
      },
      {
        id: 'AwsSolutions-APIG3',
        reason:
          'No WAF by default (cost per deployment); stage throttling and per-key limits in the API function bound abuse. A team can associate its own web ACL with the stage',
      },
      {
        id: 'AwsSolutions-APIG6',
        reason:
          'Execution logging needs the account-wide API Gateway CloudWatch role, a per-Region singleton this stack must not own; access logs record every request and the function logs its errors',
      },
    )

    const url = new CfnOutput(this, 'Url', {
      value: this.api.urlForPath('/v1'),
      description: 'Base URL of the code interpreter API',
    })
    // A fixed name the deploy guide and bin/schedule.ts can refer to.
    url.overrideLogicalId('ApiUrl')
  }
}

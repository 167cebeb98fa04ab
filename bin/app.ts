import { App, Validations } from 'aws-cdk-lib'
import { AwsSolutionsChecks } from 'cdk-nag'
import { CONFIG_CONTEXT_KEY, parseInterpreterConfig } from '../lib/config'
import { InterpreterStack } from '../lib/stack'

const app = new App()
const config = parseInterpreterConfig(app.node.tryGetContext(CONFIG_CONTEXT_KEY))

new InterpreterStack(app, 'CodeInterpreter', {
  config,
  description: 'Serverless code interpreter: REST API, isolated Python sandbox, storage',
})

// Any unacknowledged finding fails `cdk synth`.
Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }))

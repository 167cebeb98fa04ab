/** `npm start`: the whole service on this machine (see README "Local mode"). */
import { loadLocalConfig } from '../functions/local/config'
import { PythonSetupError } from '../functions/local/python-setup'
import { startLocalService } from '../functions/local/service'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'

try {
  const config = loadLocalConfig()
  const service = await startLocalService(config)
  const layers = Object.entries(service.layers)
    .filter(([, v]) => v !== false)
    .map(([k, v]) => (v === true ? k : `${k}=${v}`))
  // Refused: attempted and denied (e.g. by Lambda's seccomp profile), with the reason. A layer
  // that is false without a reason was not attempted: it does not apply to this posture.
  const refused = Object.entries(service.refused).map(([k, why]) => `${k} (${why})`)
  const off = Object.keys(service.layers).filter((k) => service.layers[k] === false && !(k in service.refused))
  console.log(`sandbox: ${config.SANDBOX_WORKERS} warm workers, ${service.posture} posture (${service.python})`)
  console.log(`isolation layers: ${layers.join(', ')}`)
  if (refused.length) console.log(`refused layers: ${refused.join(', ')}`)
  if (off.length) console.log(`not used in this posture: ${off.join(', ')}`)
  console.log(`local Lambda endpoint: ${service.lambdaUrl}`)
  console.log(`API: ${service.url}  (organization ${service.organizationId})`)
  if (service.keyCreated) {
    console.log(`\nAPI key (shown once; stored hashed in ${config.DATA_DIR}):\n\n  ${service.apiKey}\n`)
  }
  const shutdown = async () => {
    await service.stop()
    process.exit(0)
  }
  process.once('SIGINT', shutdown)
  process.once('SIGTERM', shutdown)
} catch (error) {
  const message = error instanceof PythonSetupError ? error.message : error instanceof Error ? (process.env.DEBUG ? String(error.stack) : error.message) : String(error)
  console.error(`Cannot start: ${message}`)
  process.exit(1)
}

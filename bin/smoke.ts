/**
 * `npm run smoke -- --url <ApiUrl> --key <key>`: checks a deployed stack (or `npm start`) through
 * its public HTTP API and prints one row per check. `--help` lists the checks and options.
 * Exit codes: 0 every check passed, 1 a check failed, 2 bad usage.
 */
import { HELP, parseSmokeArgs, UsageError } from './smoke/args'
import { runSmoke } from './smoke/checks'
import { formatJson, formatTable } from './smoke/report'

let options: ReturnType<typeof parseSmokeArgs>
try {
  options = parseSmokeArgs(process.argv.slice(2))
} catch (error) {
  if (!(error instanceof UsageError)) throw error
  console.error(`smoke: ${error.message}`)
  process.exit(2)
}
if (options === 'help') {
  console.log(HELP)
  process.exit(0)
}
const report = await runSmoke(options)
console.log(options.json ? formatJson(report) : formatTable(report))
process.exitCode = report.ok ? 0 : 1

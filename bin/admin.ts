/**
 * `npm run admin -- <command>`: organizations, plans and API keys.
 *
 *   org create <org_id> [--plan <plan>] [--name <name>]
 *   org set-plan <org_id> <plan>
 *   org show <org_id>
 *   key issue <org_id>            prints the key once; only its hash is stored
 *   key list <org_id>
 *   key revoke <org_id> <key_id>
 *   plans                         the configured plans (PLANS_JSON or the defaults)
 *
 * Target: the local store under DATA_DIR (through the running server's DynamoDB endpoint when
 * `npm start` is up, else directly), or with --table <name> (or TABLE_NAME) the deployed table
 * through the AWS SDK's usual credentials and region.
 */
import { DynamoDBClient } from '@aws-sdk/client-dynamodb'
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb'
import { existsSync, readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { DynamoStore } from '../functions/adapters/dynamo-store'
import { hashApiKey, newApiKey, newId } from '../functions/core/ids'
import { parsePlans } from '../functions/core/plans'
import { startLocalDynamo } from '../functions/local/dynamo'
import { LOCAL_TABLE, localDynamoEndpointFile } from '../functions/local/service'

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
const ORG = /^org_[A-Za-z0-9_-]{1,64}$/

function fail(message: string): never {
  console.error(message)
  process.exit(2)
}

async function openStore(table: string | undefined) {
  if (table) {
    const doc = DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } })
    return { store: new DynamoStore(doc, table), where: `table ${table}`, close: async () => {} }
  }
  const dataDir = resolve(process.env.DATA_DIR ?? '.data')
  const credentials = { accessKeyId: 'local', secretAccessKey: 'local' }
  const running = localDynamoEndpointFile(dataDir)
  let endpoint: string
  let close = async () => {}
  if (existsSync(running)) {
    endpoint = readFileSync(running, 'utf8').trim()
  } else {
    const local = await startLocalDynamo(join(dataDir, 'dynamodb'), LOCAL_TABLE)
    endpoint = local.endpoint
    close = () => new Promise<void>((r) => local.server.close(() => r()))
  }
  const doc = DynamoDBDocumentClient.from(new DynamoDBClient({ endpoint, region: 'us-east-1', credentials }), {
    marshallOptions: { removeUndefinedValues: true },
  })
  return { store: new DynamoStore(doc, LOCAL_TABLE), where: `local store in ${dataDir}`, close }
}

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { plan: { type: 'string' }, name: { type: 'string' }, table: { type: 'string' } },
  })
  const [group, command, ...args] = positionals
  const plans = parsePlans(process.env.PLANS_JSON)
  if (group === 'plans') {
    console.log(JSON.stringify(plans, null, 2))
    return
  }
  const orgId = args[0]
  if (!group || !command || !orgId) fail('usage: npm run admin -- org|key <command> <org_id> ... (see bin/admin.ts)')
  if (!ORG.test(orgId)) fail(`"${orgId}" is not an organization id (org_<letters, digits, _ or ->)`)
  const checkPlan = (plan: string) => {
    if (!plans[plan]) fail(`unknown plan "${plan}"; plans: ${Object.keys(plans).join(', ')}`)
    return plan
  }
  const { store, where, close } = await openStore(values.table ?? process.env.TABLE_NAME)
  try {
    const now = Math.floor(Date.now() / 1000)
    if (group === 'org' && command === 'create') {
      if (await store.getOrganization(orgId)) fail(`${orgId} already exists (use org set-plan)`)
      const plan = checkPlan(values.plan ?? 'standard')
      await store.putOrganization({ id: orgId, plan, name: values.name, created_at: now })
      console.log(`created ${orgId} on plan ${plan} (${where})`)
    } else if (group === 'org' && command === 'set-plan') {
      const org = (await store.getOrganization(orgId)) ?? fail(`${orgId} does not exist (use org create)`)
      await store.putOrganization({ ...org, plan: checkPlan(args[1] ?? fail('usage: org set-plan <org_id> <plan>')) })
      console.log(`${orgId} is now on plan ${args[1]} (${where})`)
    } else if (group === 'org' && command === 'show') {
      const org = (await store.getOrganization(orgId)) ?? fail(`${orgId} does not exist`)
      console.log(JSON.stringify({ ...org, keys: await store.listKeys(orgId) }, null, 2))
    } else if (group === 'key' && command === 'issue') {
      if (!(await store.getOrganization(orgId))) fail(`${orgId} does not exist (org create ${orgId} --plan <plan> first)`)
      const key = newApiKey()
      const keyId = newId('key')
      await store.put(hashApiKey(key), { organizationId: orgId, keyId })
      console.log(`issued ${keyId} for ${orgId} (${where}). The key, shown this once:\n\n  ${key}\n`)
    } else if (group === 'key' && command === 'list') {
      console.log(JSON.stringify(await store.listKeys(orgId), null, 2))
    } else if (group === 'key' && command === 'revoke') {
      const keyId = args[1] ?? fail('usage: key revoke <org_id> <key_id>')
      if (!(await store.revokeKey(orgId, keyId))) fail(`${orgId} has no key ${keyId}`)
      console.log(`revoked ${keyId} of ${orgId} (${where})`)
    } else {
      fail(`unknown command "${group} ${command}" (see bin/admin.ts)`)
    }
  } finally {
    await close()
  }
}

await main()

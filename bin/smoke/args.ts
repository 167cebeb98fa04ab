/** Command-line options of `npm run smoke`, validated with zod. */
import { parseArgs } from 'node:util'
import { z } from 'zod'

export const DEFAULT_URL = 'http://127.0.0.1:8787'

/** Groups of checks that --skip may leave out (health, the key and the first block always run). */
export const SKIPPABLE = ['layers', 'error', 'timeout', 'network', 'credentials', 'files', 'session', 'model', 'latency'] as const
export type Skippable = (typeof SKIPPABLE)[number]

export const HELP = `Usage: npm run smoke -- [--url URL] [--key KEY] [options]

Checks a running code interpreter (the deployed stack or \`npm start\`) through its public
HTTP API only, and prints one row per check: check, result, ms, detail. Exit code 0 when
every check passes, 1 when any fails (one "FAIL <check>: <why>" line each), 2 for bad usage.

  --url URL            the API: the stack's ApiUrl output (with or without its /v1), or the
                       local server (default ${DEFAULT_URL}). Plain http only to a loopback
                       host unless --allow-http (the key would cross the network in clear).
  --key KEY            an API key of the organization to test. Default: $SMOKE_API_KEY, then
                       $LOCAL_API_KEY. Prefer the variable: a command line is visible to every
                       process of the machine (/proc/*/cmdline).
  --org ORG            the key's organization (default: found from the key, POST /v1/sessions).
  --skip A,B           leave out groups of checks: ${SKIPPABLE.join(', ')}.
  --require A,B        isolation layers that must be granted, on top of the posture's defaults
                       (e.g. nondumpable, when the sandbox sets SANDBOX_REQUIRE to include it).
  --timeout-ms N       the time limit for the timeout check's one block (default 2000, 100-60000).
  --warm-blocks N      blocks timed for the warm latency (default 5, 1-50).
  --request-timeout-s N  give up on one HTTP call after N seconds (default 120; a model
                       response gets 300 at least).
  --json               print the results as JSON instead of the table.
  --help               this text.

What runs (each block is one POST /v1/executions; everything it creates is deleted at the end):
  health            GET /v1/health without a key answers {"status": "ok"}.
  key               POST /v1/sessions: the key is accepted (401 = "the key was refused").
  execution         print(1+1) answers "2" (the first block: its time is the cold latency).
  latency           the first block's time (cold only if no environment of this organization
                    was warm) and the median of the next blocks (warm), measured here.
  layers            GET /v1/health with the key: every layer the posture requires is granted
                    (FAIL otherwise, or when the probe answers 503); refused layers that are
                    not required are listed as info.
  failing block     a ZeroDivisionError comes back as status failed with the error's name and a
                    traceback of the user's code only.
  timeout           a block that sleeps 120 s with timeout_ms lowered to --timeout-ms ends
                    timed_out. timeout_ms may only lower the configured limit, so this needs no
                    knowledge of CODE_TIMEOUT_MS and costs ~2 s, also against a deployed stack
                    whose limit is 30 s. (If the server ignored timeout_ms the block would run
                    to the configured limit: still timed_out when that is under 120 s.)
  network           from inside a block: TCP to 1.1.1.1:443, DNS (example.com) and the Lambda
                    Runtime API (127.0.0.1:9001, and $AWS_LAMBDA_RUNTIME_API if a block sees it),
                    each through Python's socket module and again by raw system calls past the
                    audit hook. Any connection or answer is a FAIL; except that in the lambda
                    posture the Runtime API is reachable by design (docs/security.md), shown as
                    info.
  credentials       names (never values) of credential-like variables (AWS_ACCESS_KEY_ID,
                    AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_LAMBDA_RUNTIME_API, *SECRET*,
                    *TOKEN*, *KEY*, *PASSWORD*, *CREDENTIAL*) in the block's os.environ, its
                    /proc/self/environ and every /proc/*/environ it can read (the runner's is
                    where the role's keys live): any is a FAIL.
  file in/chart out a small CSV uploaded with POST /v1/files and passed in file_ids is read with
                    pandas; a matplotlib bar chart comes back as an image whose bytes, fetched
                    from /v1/files/{id}/content, start with the PNG signature.
  session state     two blocks in one session: the second reads a variable the first set.
  model response    an assistant with the code interpreter answers a question with mode "on";
                    n/a when the server answers 503 model_not_configured.
`

const PositiveInt = (min: number, max: number, name: string) =>
  z.coerce
    .number({ error: `${name}: not a number` })
    .int(`${name}: must be a whole number`)
    .min(min, `${name}: must be at least ${min}`)
    .max(max, `${name}: must be at most ${max}`)

const list = (raw: string | string[] | undefined) =>
  (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean)

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$/

export const SmokeOptions = z
  .object({
    url: z
      .string()
      .trim()
      .pipe(z.url({ protocol: /^https?$/, error: (issue) => `--url: not an http(s) URL: ${JSON.stringify(issue.input)}` })),
    key: z
      .string({ error: '--key: no API key (pass --key KEY, or set SMOKE_API_KEY or LOCAL_API_KEY)' })
      .trim()
      .min(1, '--key: no API key (pass --key KEY, or set SMOKE_API_KEY or LOCAL_API_KEY)')
      .regex(/^[\x21-\x7e]+$/, '--key: must be printable ASCII without spaces'),
    org: z.string().regex(/^org_[A-Za-z0-9_-]{1,64}$/, '--org: must look like org_<id>').optional(),
    json: z.boolean().default(false),
    skip: z.array(z.enum(SKIPPABLE, { error: (i) => `--skip: unknown check ${JSON.stringify(i.input)}; one of ${SKIPPABLE.join(', ')}` })).default([]),
    require: z.array(z.string().regex(/^[a-z_]{1,40}$/, '--require: layer names are lowercase words, e.g. nondumpable')).default([]),
    timeoutMs: PositiveInt(100, 60_000, '--timeout-ms').default(2000),
    warmBlocks: PositiveInt(1, 50, '--warm-blocks').default(5),
    requestTimeoutS: PositiveInt(5, 900, '--request-timeout-s').default(120),
    allowHttp: z.boolean().default(false),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (!URL.canParse(o.url)) return // reported by the url field
    const url = new URL(o.url)
    if (url.protocol === 'http:' && !LOOPBACK.test(url.hostname) && !o.allowHttp) {
      ctx.addIssue({
        code: 'custom',
        path: ['url'],
        message: `--url: plain http to ${url.hostname} would send the key unencrypted; use https (the stack's ApiUrl is https), or --allow-http`,
      })
    }
    if (url.search || url.hash) ctx.addIssue({ code: 'custom', path: ['url'], message: '--url: no query string or fragment, just the base URL' })
  })
export type SmokeOptions = z.infer<typeof SmokeOptions>

export class UsageError extends Error {}

/** argv (without node and the script) and the environment -> options, or 'help'; UsageError with a clear message. */
export function parseSmokeArgs(argv: string[], env: Record<string, string | undefined> = process.env): SmokeOptions | 'help' {
  let values: Record<string, string | string[] | boolean | undefined>
  try {
    ;({ values } = parseArgs({
      args: argv,
      allowPositionals: false,
      options: {
        url: { type: 'string' },
        key: { type: 'string' },
        org: { type: 'string' },
        json: { type: 'boolean' },
        skip: { type: 'string', multiple: true },
        require: { type: 'string', multiple: true },
        'timeout-ms': { type: 'string' },
        'warm-blocks': { type: 'string' },
        'request-timeout-s': { type: 'string' },
        'allow-http': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }))
  } catch (error) {
    throw new UsageError(`${(error as Error).message}\nRun with --help for the options.`)
  }
  if (values.help) return 'help'
  const parsed = SmokeOptions.safeParse({
    url: values.url ?? DEFAULT_URL,
    key: values.key ?? env.SMOKE_API_KEY ?? env.LOCAL_API_KEY,
    org: values.org,
    json: values.json ?? false,
    skip: list(values.skip as string[] | undefined),
    require: list(values.require as string[] | undefined),
    timeoutMs: values['timeout-ms'],
    warmBlocks: values['warm-blocks'],
    requestTimeoutS: values['request-timeout-s'],
    allowHttp: values['allow-http'] ?? false,
  })
  if (!parsed.success) throw new UsageError(parsed.error.issues.map((i) => i.message).join('\n'))
  return parsed.data
}

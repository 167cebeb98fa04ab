import { BedrockRuntimeClient } from '@aws-sdk/client-bedrock-runtime'
import { inflateSync } from 'node:zlib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { BedrockModel } from '../../functions/adapters/models/bedrock'
import { type ConverseServer, converseText, converseToolUse, type RecordedConverse, startConverseServer } from '../support/converse-server'
import { api, execute, startTestService, TEST_KEY } from '../support/local'

// Files through every layer: multipart upload -> API -> DynamoDB (dynalite) + S3 (s3rver);
// file_ids -> the payload (inline) or presigned URLs the runner fetches -> the code reads
// them by name; what the code writes -> stored files -> GET /v1/files/{id}/content.
let ctx: Awaited<ReturnType<typeof startTestService>>
let converse: ConverseServer
const auth = { authorization: `Bearer ${TEST_KEY}` }

const SALES = 'region,revenue,cost\nnorth,1200,800\nsouth,950,700\neast,1800,1100\n'

function form(fields: Record<string, string>, file?: { name: string; type?: string; data: Buffer | string }) {
  const fd = new FormData()
  for (const [k, v] of Object.entries(fields)) fd.append(k, v)
  if (file) fd.append('file', new Blob([file.data], { type: file.type ?? 'application/octet-stream' }), file.name)
  return fd
}

async function upload(fields: Record<string, string>, file?: { name: string; type?: string; data: Buffer | string }, headers = auth) {
  const res = await fetch(`${ctx.service.url}/v1/files`, { method: 'POST', headers, body: form(fields, file) })
  return { status: res.status, body: (await res.json()) as any }
}

async function content(id: string, headers = auth) {
  const res = await fetch(`${ctx.service.url}/v1/files/${id}/content`, { headers })
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) }
}

/** A PNG that decodes: signature, IHDR, IDAT that inflates to height rows, IEND. */
function decodePng(png: Buffer) {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))
  let at = 8
  let width = 0
  let height = 0
  const idat: Buffer[] = []
  let ended = false
  while (at < png.length) {
    const length = png.readUInt32BE(at)
    const type = png.subarray(at + 4, at + 8).toString('latin1')
    const data = png.subarray(at + 8, at + 8 + length)
    if (type === 'IHDR') {
      width = data.readUInt32BE(0)
      height = data.readUInt32BE(4)
    }
    if (type === 'IDAT') idat.push(data)
    if (type === 'IEND') ended = true
    at += 12 + length
  }
  expect(ended).toBe(true)
  const raw = inflateSync(Buffer.concat(idat))
  return { width, height, rawBytes: raw.length }
}

/** When a SigV4 presigned URL stops working, by what it carries (unix seconds). */
function carriedExpiry(url: string): number {
  const q = new URL(url).searchParams
  const d = q.get('X-Amz-Date')!
  const signed = Date.UTC(+d.slice(0, 4), +d.slice(4, 6) - 1, +d.slice(6, 8), +d.slice(9, 11), +d.slice(11, 13), +d.slice(13, 15)) / 1000
  return signed + Number(q.get('X-Amz-Expires'))
}

const lastUserText = (r: RecordedConverse): string =>
  r.body.messages.filter((m: any) => m.role === 'user' && m.content.some((c: any) => c.text)).at(-1)?.content.find((c: any) => c.text)?.text ?? ''
const resultText = (r: RecordedConverse) =>
  r.body.messages.flatMap((m: any) => m.content.filter((c: any) => c.toolResult)).at(-1)?.toolResult.content.map((c: any) => c.text ?? '').join('') ?? ''

beforeAll(async () => {
  converse = await startConverseServer((r) => {
    if (r.body.messages.at(-1).content.some((c: any) => c.toolResult)) return converseText(`ROI: ${resultText(r).trim()}`)
    if (lastUserText(r).startsWith('ROI')) {
      return converseToolUse('t1', 'code_interpreter', {
        code: "import pandas as pd\ndf = pd.read_csv('sales.csv')\nroi = (df.revenue.sum() - df.cost.sum()) / df.cost.sum()\nprint(f'{roi:.2%}')",
      })
    }
    return converseText('?')
  })
  const client = new BedrockRuntimeClient({ endpoint: converse.url, region: 'us-east-1', credentials: { accessKeyId: 't', secretAccessKey: 't' }, maxAttempts: 1 })
  ctx = await startTestService({ SANDBOX_SLOT_UID_BASE: '63100', FILE_MAX_BYTES: String(80 * 1024 * 1024) }, { model: new BedrockModel({ client, defaultModel: 'test.model-v1:0', baseDelayMs: 1 }) })
})
afterAll(async () => {
  await ctx?.stop()
  await converse?.close()
})

describe('the files API', () => {
  it('stores a multipart upload and serves its metadata, listing and bytes', async () => {
    const up = await upload({ purpose: 'assistants' }, { name: 'sales.csv', type: 'text/csv', data: SALES })
    expect(up.status).toBe(200)
    expect(up.body).toMatchObject({ object: 'file', filename: 'sales.csv', bytes: SALES.length, mime_type: 'text/csv', purpose: 'assistants', status: 'processed', organization_id: 'org_test' })
    expect(up.body.id).toMatch(/^file_/)
    expect((await api(ctx.service, 'GET', `/v1/files/${up.body.id}`)).body).toEqual(up.body)
    expect((await api(ctx.service, 'GET', '/v1/files?limit=100')).body.data.map((f: any) => f.id)).toContain(up.body.id)
    const got = await content(up.body.id)
    expect(got.status).toBe(200)
    expect(got.headers.get('content-type')).toBe('text/csv')
    expect(got.bytes.toString()).toBe(SALES)
    // Binary bytes survive the trip (every byte value).
    const binary = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256))
    const bin = await upload({ purpose: 'user_data' }, { name: 'blob.bin', data: binary })
    expect(bin.body).toMatchObject({ bytes: 4096, mime_type: 'application/octet-stream' })
    expect((await content(bin.body.id)).bytes.equals(binary)).toBe(true)
  })

  it('refuses bad uploads with a clear 4xx and code', async () => {
    expect((await upload({}, { name: 'a.csv', data: 'x' })).body.error.message).toMatch(/^purpose/)
    expect((await upload({ purpose: 'fine-tune' }, { name: 'a.csv', data: 'x' })).status).toBe(400)
    expect((await upload({ purpose: 'assistants' })).body.error.message).toMatch(/^file/)
    expect((await upload({ purpose: 'assistants' }, { name: '../etc/passwd', data: 'x' })).body.error.message).toMatch(/^filename/)
    expect((await upload({ purpose: 'assistants' }, { name: '.bashrc', data: 'x' })).status).toBe(400)
    const json = await api(ctx.service, 'POST', '/v1/files', { purpose: 'assistants' })
    expect(json.status).toBe(415)
    expect(json.body.error.code).toBe('unsupported_media_type')
    // Over the direct-upload limit (but under the gateway's 10 MB): 413 naming the presigned route.
    const big = await upload({ purpose: 'assistants' }, { name: 'big.csv', data: Buffer.alloc(10 * 1024 * 1024 - 40 * 1024, 0x41) })
    expect(big.status).toBe(413)
    expect(big.body.error).toMatchObject({ code: 'file_too_large' })
    expect(big.body.error.message).toContain('/v1/files/uploads')
    const declared = await api(ctx.service, 'POST', '/v1/files/uploads', { filename: 'huge.csv', purpose: 'assistants', bytes: 81 * 1024 * 1024 })
    expect(declared.status).toBe(413)
  })

  it('takes large files through a presigned upload, checked at completion', async () => {
    const data = Buffer.alloc(12 * 1024 * 1024, 0x61)
    const started = await api(ctx.service, 'POST', '/v1/files/uploads', { filename: 'wide.txt', purpose: 'assistants', bytes: data.length })
    expect(started.status).toBe(200)
    expect(started.body).toMatchObject({ object: 'file.upload', method: 'PUT', file: { status: 'pending', bytes: data.length } })
    // The upload URL lives 15 minutes (PRESIGNED_URL_SECONDS), and expires_at is when it ends.
    const now = Math.floor(Date.now() / 1000)
    expect(started.body.expires_at).toBe(carriedExpiry(started.body.upload_url))
    expect(started.body.expires_at - now).toBeGreaterThanOrEqual(895)
    expect(started.body.expires_at - now).toBeLessThanOrEqual(901)
    const id = started.body.file.id
    // Not usable, and not completable, before its bytes arrive.
    expect((await api(ctx.service, 'POST', `/v1/files/uploads/${id}/complete`)).body.error.code).toBe('upload_missing')
    expect((await execute(ctx.service, '1', { file_ids: [id] })).body.error.code).toBe('file_not_ready')
    const put = await fetch(started.body.upload_url, { method: 'PUT', body: data })
    expect(put.status).toBe(200)
    const done = await api(ctx.service, 'POST', `/v1/files/uploads/${id}/complete`)
    expect(done.body).toMatchObject({ id, status: 'processed', bytes: data.length })
    // Over 10 MB, a download goes to S3 directly (API Gateway streams only 10 MB at full speed).
    const asked = Math.floor(Date.now() / 1000)
    const redirect = await fetch(`${ctx.service.url}/v1/files/${id}/content`, { headers: auth, redirect: 'manual' })
    expect(redirect.status).toBe(307)
    // The answer also says where and until when (for clients that do not follow redirects).
    const location = redirect.headers.get('location')!
    expect(await redirect.json()).toEqual({ object: 'file.download', url: location, expires_at: carriedExpiry(location) })
    expect(carriedExpiry(location) - asked).toBeGreaterThanOrEqual(895)
    expect(carriedExpiry(location) - asked).toBeLessThanOrEqual(901)
    const direct = await fetch(location)
    expect(direct.headers.get('content-disposition')).toBe("attachment; filename*=UTF-8''wide.txt")
    expect(Buffer.from(await direct.arrayBuffer()).equals(data)).toBe(true)

    const liar = await api(ctx.service, 'POST', '/v1/files/uploads', { filename: 'liar.txt', purpose: 'assistants', bytes: 10 })
    await fetch(liar.body.upload_url, { method: 'PUT', body: 'only five' })
    const refused = await api(ctx.service, 'POST', `/v1/files/uploads/${liar.body.file.id}/complete`)
    expect(refused.status).toBe(400)
    expect(refused.body.error.code).toBe('upload_size_mismatch')
  })

  it('deletes a file, and another organization can neither see, read, delete nor use it', async () => {
    const mine = (await upload({ purpose: 'assistants' }, { name: 'secret.csv', data: 'a\n1\n' })).body
    const key = await ctx.service.issueKey('org_files_other')
    const theirs = { authorization: `Bearer ${key}` }
    expect((await api(ctx.service, 'GET', `/v1/files/${mine.id}`, undefined, theirs)).status).toBe(404)
    expect((await content(mine.id, theirs)).status).toBe(404)
    expect((await api(ctx.service, 'DELETE', `/v1/files/${mine.id}`, undefined, theirs)).status).toBe(404)
    expect((await api(ctx.service, 'GET', '/v1/files', undefined, theirs)).body.data).toEqual([])
    const used = await api(ctx.service, 'POST', '/v1/executions', { organization_id: 'org_files_other', code: "print(open('secret.csv').read())", file_ids: [mine.id] }, theirs)
    expect(used.status).toBe(404)
    expect(used.body.error.code).toBe('not_found')
    expect((await api(ctx.service, 'DELETE', `/v1/files/${mine.id}`)).body).toEqual({ id: mine.id, object: 'file', deleted: true })
    expect((await api(ctx.service, 'GET', `/v1/files/${mine.id}`)).status).toBe(404)
  })
})

describe('files in the sandbox', () => {
  it('puts file_ids in the working directory, read-only, and does not return them unchanged', async () => {
    const file = (await upload({ purpose: 'assistants' }, { name: 'sales.csv', type: 'text/csv', data: SALES })).body
    const res = await execute(
      ctx.service,
      "import pandas as pd, os\ndf = pd.read_csv('sales.csv')\nprint(int(df.revenue.sum()))\ntry:\n    open('sales.csv', 'a').write('x')\nexcept PermissionError:\n    print('read-only')\nprint(oct(os.stat('sales.csv').st_mode & 0o777))",
      { file_ids: [file.id] },
    )
    expect(res.body.status).toBe('completed')
    expect(res.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: '3950\nread-only\n0o444' }])
  })

  it('400 when two files share a name; 404 for an unknown file id', async () => {
    const a = (await upload({ purpose: 'assistants' }, { name: 'same.csv', data: 'a' })).body
    const b = (await upload({ purpose: 'assistants' }, { name: 'same.csv', data: 'b' })).body
    const both = await execute(ctx.service, '1', { file_ids: [a.id, b.id] })
    expect(both.status).toBe(400)
    expect(both.body.error.code).toBe('duplicate_file_name')
    expect((await execute(ctx.service, '1', { file_ids: ['file_doesnotexist'] })).status).toBe(404)
  })

  it('returns a chart as an image file whose bytes are a valid PNG', async () => {
    const res = await execute(ctx.service, "import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\nax.bar(['n', 's', 'e'], [1200, 950, 1800])\nplt.show()")
    const image = res.body.outputs.find((o: any) => o.type === 'image')
    expect(image).toMatchObject({ type: 'image', mime_type: 'image/png', file_id: expect.stringMatching(/^file_/) })
    const png = await content(image.file_id)
    expect(png.headers.get('content-type')).toBe('image/png')
    expect(png.bytes.length).toBe(image.bytes)
    // Small enough to come inline too, with the same bytes.
    expect(image.url).toBe(`data:image/png;base64,${png.bytes.toString('base64')}`)
    const decoded = decodePng(png.bytes)
    expect(decoded.width).toBeGreaterThan(100)
    expect(decoded.height).toBeGreaterThan(100)
    expect(decoded.rawBytes).toBeGreaterThanOrEqual(decoded.width * decoded.height * 3)
    expect((await api(ctx.service, 'GET', `/v1/files/${image.file_id}`)).body).toMatchObject({ purpose: 'assistants_output', filename: 'image-1.png' })
  })

  it('turns written files into ordinary file ids that later requests can use', async () => {
    const made = await execute(ctx.service, "import pandas as pd\npd.DataFrame({'x': [1, 2, 3]}).to_csv('report.csv', index=False)")
    const out = made.body.outputs.find((o: any) => o.type === 'file')
    expect(out).toMatchObject({ type: 'file', filename: 'report.csv', mime_type: 'text/csv', bytes: 8, file_id: expect.stringMatching(/^file_/) })
    expect((await content(out.file_id)).bytes.toString()).toBe('x\n1\n2\n3\n')
    const reused = await execute(ctx.service, "print(open('report.csv').read().split())", { file_ids: [out.file_id] })
    expect(reused.body.outputs).toEqual([{ type: 'text', source: 'stdout', text: "['x', '1', '2', '3']" }])
  })

  it('returns a generated file larger than the invoke result through an upload slot', async () => {
    const res = await execute(ctx.service, "open('big.bin', 'wb').write(bytes(range(256)) * 32768)")
    const out = res.body.outputs.find((o: any) => o.type === 'file')
    expect(out).toMatchObject({ filename: 'big.bin', bytes: 8 * 1024 * 1024 })
    const got = await content(out.file_id)
    expect(got.bytes.length).toBe(8 * 1024 * 1024)
    expect(got.bytes.subarray(0, 512).equals(Buffer.from([...Array(256).keys(), ...Array(256).keys()]))).toBe(true)
  })

  it('analyses a 50 MB CSV that only a presigned URL can carry', async () => {
    const parts = ['id,amount\n']
    let size = parts[0]!.length
    let rows = 0
    let sum = 0
    while (size < 50 * 1024 * 1024) {
      const line = `${rows},${rows % 1000}\n`
      parts.push(line)
      size += line.length
      sum += rows % 1000
      rows++
    }
    const data = Buffer.from(parts.join(''))
    const started = await api(ctx.service, 'POST', '/v1/files/uploads', { filename: 'ledger.csv', purpose: 'assistants', bytes: data.length })
    expect((await fetch(started.body.upload_url, { method: 'PUT', body: data })).status).toBe(200)
    const id = (await api(ctx.service, 'POST', `/v1/files/uploads/${started.body.file.id}/complete`)).body.id
    const res = await execute(ctx.service, "import pandas as pd, os\ndf = pd.read_csv('ledger.csv')\nprint(os.path.getsize('ledger.csv'), len(df), int(df.amount.sum()))", { file_ids: [id] })
    expect(res.body.status).toBe('completed')
    expect(res.body.outputs[0].text).toBe(`${data.length} ${rows} ${sum}`)
  }, 120_000)

  it('a CSV upload is analysed by pandas through /v1/responses (Converse stand-in)', async () => {
    const file = (await upload({ purpose: 'assistants' }, { name: 'sales.csv', type: 'text/csv', data: SALES })).body
    const assistant = (await api(ctx.service, 'POST', '/v1/assistants', { name: 'Analyst', tools: [{ type: 'code_interpreter' }] })).body.id
    const res = await api(ctx.service, 'POST', '/v1/responses', { assistant_id: assistant, inputs: [{ role: 'user', content: 'ROI on these sales figures?' }], file_ids: [file.id] })
    expect(res.status).toBe(200)
    const call = res.body.output.find((o: any) => o.type === 'code_interpreter_call')
    expect(call.outputs).toEqual([{ type: 'text', source: 'stdout', text: '51.92%' }])
    expect(res.body.output.at(-1).content[0].text).toBe('ROI: 51.92%')
    // The model was told where the file is.
    const first = converse.requests.findLast((r) => lastUserText(r).startsWith('ROI'))!
    expect(JSON.stringify(first.body.system)).toContain('sales.csv')
    // An assistant's own file_ids work too.
    const withFiles = (await api(ctx.service, 'POST', '/v1/assistants', { name: 'A2', tools: [{ type: 'code_interpreter' }], file_ids: [file.id] })).body.id
    const again = await api(ctx.service, 'POST', '/v1/responses', { assistant_id: withFiles, inputs: [{ role: 'user', content: 'ROI again' }] })
    expect(again.body.output.find((o: any) => o.type === 'code_interpreter_call').outputs[0].text).toBe('51.92%')
  })
})

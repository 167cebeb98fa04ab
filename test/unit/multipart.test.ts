import { describe, expect, it } from 'vitest'
import { parseMultipart } from '../../functions/handlers/multipart'

// Bodies built by the platform's own FormData, so the parser reads what clients really send.
async function encoded(build: (fd: FormData) => void) {
  const fd = new FormData()
  build(fd)
  const req = new Request('http://x/', { method: 'POST', body: fd })
  return { body: Buffer.from(await req.arrayBuffer()), type: req.headers.get('content-type')! }
}

describe('parseMultipart', () => {
  it('reads fields and a binary file part exactly', async () => {
    const bytes = Buffer.from(Array.from({ length: 1000 }, (_, i) => (i * 7) % 256))
    const { body, type } = await encoded((fd) => {
      fd.append('purpose', 'assistants')
      fd.append('file', new Blob([bytes], { type: 'application/x-thing' }), 'données "Q3".bin')
    })
    const parts = parseMultipart(body, type)
    expect(parts.map((p) => p.name)).toEqual(['purpose', 'file'])
    expect(parts[0]!.data.toString()).toBe('assistants')
    expect(parts[0]!.filename).toBeUndefined()
    expect(parts[1]!.filename).toBe('données "Q3".bin')
    expect(parts[1]!.contentType).toBe('application/x-thing')
    expect(parts[1]!.data.equals(bytes)).toBe(true)
  })

  it('reads the RFC 5987 filename* form', () => {
    const body = Buffer.from(
      '--b1\r\nContent-Disposition: form-data; name="file"; filename*=UTF-8\'\'r%C3%A9sum%C3%A9.csv\r\n\r\na,b\r\n--b1--\r\n',
    )
    expect(parseMultipart(body, 'multipart/form-data; boundary=b1')[0]).toMatchObject({ name: 'file', filename: 'résumé.csv' })
  })

  it('refuses what is not multipart, or is cut short, with 4xx errors', () => {
    expect(() => parseMultipart(Buffer.from('{}'), 'application/json')).toThrow(expect.objectContaining({ statusCode: 415 }))
    expect(() => parseMultipart(Buffer.from('--b1\r\nContent-Disposition: form-data; name="a"\r\n\r\nxyz'), 'multipart/form-data; boundary=b1')).toThrow(
      expect.objectContaining({ statusCode: 400, message: expect.stringContaining('closing boundary') }),
    )
    expect(() => parseMultipart(Buffer.from('no boundary here'), 'multipart/form-data; boundary=b1')).toThrow(expect.objectContaining({ statusCode: 400 }))
    expect(() => parseMultipart(Buffer.from('--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n--b1--'), 'multipart/form-data; boundary=b1')).toThrow(
      expect.objectContaining({ message: expect.stringContaining('Content-Disposition') }),
    )
  })
})

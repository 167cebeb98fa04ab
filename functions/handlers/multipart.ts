/**
 * A strict multipart/form-data reader for uploads (RFC 7578): parts with their headers and
 * bytes. The body has already been size-checked by API Gateway (10 MB), so it is in memory.
 */
import { invalidRequest, unsupportedMediaType } from '../core/errors'

export interface FormPart {
  name: string
  filename?: string
  contentType?: string
  data: Buffer
}

const MAX_PARTS = 16

export function boundaryOf(contentType: string | undefined): string {
  const match = contentType?.match(/^\s*multipart\/form-data\s*;(?:.*;)?\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))/i)
  if (!match) throw unsupportedMediaType('Send the file as multipart/form-data with a "file" part and a "purpose" field.')
  return (match[1] ?? match[2])!
}

function parameter(disposition: string, name: string): string | undefined {
  // filename*= (RFC 5987) first, then the plain quoted or bare form.
  const extended = disposition.match(new RegExp(`;\\s*${name}\\*=(?:UTF-8|utf-8)''([^;]+)`))
  if (extended) {
    try {
      return decodeURIComponent(extended[1]!.trim())
    } catch {
      throw invalidRequest(`multipart: the ${name}* parameter is not valid percent-encoding`)
    }
  }
  const quoted = disposition.match(new RegExp(`;\\s*${name}="((?:[^"\\\\]|\\\\.)*)"`))
  // Browsers (WHATWG) escape only these three as %XX inside quotes; others use backslashes.
  if (quoted) return quoted[1]!.replace(/\\(.)/g, '$1').replace(/%22|%0D|%0A/gi, (m) => decodeURIComponent(m))
  return disposition.match(new RegExp(`;\\s*${name}=([^;\\s]+)`))?.[1]
}

export function parseMultipart(body: Buffer, contentType: string | undefined): FormPart[] {
  const boundary = boundaryOf(contentType)
  const delimiter = Buffer.from(`--${boundary}`)
  const parts: FormPart[] = []
  let at = body.indexOf(delimiter)
  if (at < 0) throw invalidRequest('multipart: the body does not contain the boundary from the Content-Type header')
  for (;;) {
    at += delimiter.length
    // "--" after a delimiter ends the body.
    if (body[at] === 0x2d && body[at + 1] === 0x2d) break
    if (body[at] !== 0x0d || body[at + 1] !== 0x0a) throw invalidRequest('multipart: a boundary line is malformed')
    at += 2
    const headerEnd = body.indexOf('\r\n\r\n', at)
    if (headerEnd < 0) throw invalidRequest('multipart: a part has no end of headers')
    const headers = new Map<string, string>()
    for (const line of body.subarray(at, headerEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':')
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim())
    }
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4)
    if (next < 0) throw invalidRequest('multipart: the body ends before its closing boundary')
    const disposition = headers.get('content-disposition') ?? ''
    if (!/^form-data\b/i.test(disposition)) throw invalidRequest('multipart: every part needs Content-Disposition: form-data')
    const name = parameter(disposition, 'name')
    if (!name) throw invalidRequest('multipart: a part has no name')
    parts.push({
      name,
      filename: parameter(disposition, 'filename'),
      contentType: headers.get('content-type'),
      data: body.subarray(headerEnd + 4, next),
    })
    if (parts.length > MAX_PARTS) throw invalidRequest(`multipart: at most ${MAX_PARTS} parts`)
    at = next + 2
  }
  return parts
}

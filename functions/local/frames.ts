/** 4-byte big-endian length-prefixed messages, as python-runtime/local_worker.py speaks them. */
export function encodeMessage(value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value), 'utf8')
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

export class MessageReader {
  private buffer: Buffer = Buffer.alloc(0)

  constructor(private readonly limit: number) {}

  /** Returns every complete message; throws when a message announces more than the limit. */
  feed(chunk: Buffer): unknown[] {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk
    const out: unknown[] = []
    while (this.buffer.length >= 4) {
      const size = this.buffer.readUInt32BE(0)
      if (size > this.limit) throw new Error(`worker message of ${size} bytes exceeds ${this.limit}`)
      if (this.buffer.length < 4 + size) break
      out.push(JSON.parse(this.buffer.subarray(4, 4 + size).toString('utf8')))
      this.buffer = this.buffer.subarray(4 + size)
    }
    return out
  }
}

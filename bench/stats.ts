/** Small helpers for the benchmark: latency summaries and a plain-text table. */

export interface Summary {
  n: number
  median: number
  p99: number
  min: number
  max: number
}

/** Nearest-rank percentile of an ascending array (p in 0..100). */
function percentile(sorted: number[], p: number): number {
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!
}

export function summarize(samples: number[]): Summary {
  if (samples.length === 0) throw new Error('no samples')
  const sorted = [...samples].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
  return { n: sorted.length, median, p99: percentile(sorted, 99), min: sorted[0]!, max: sorted[sorted.length - 1]! }
}

/** Milliseconds with precision that suits the magnitude. */
export function ms(value: number): string {
  if (value >= 100) return value.toFixed(0)
  if (value >= 10) return value.toFixed(1)
  return value.toFixed(2)
}

/** Renders rows as an aligned text table; numeric-looking cells are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  // Drop columns that are empty everywhere.
  const keep = header.map((h, i) => h !== '' || rows.some((r) => (r[i] ?? '') !== ''))
  header = header.filter((_, i) => keep[i])
  rows = rows.map((r) => r.filter((_, i) => keep[i]))
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const numeric = (s: string) => /^[-+]?[\d.,]+( ?[a-zA-Z%×]+)?$/.test(s)
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric(c) && i > 0 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

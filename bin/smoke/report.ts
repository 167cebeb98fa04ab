/** The smoke report as a table (and one line per failure) or as JSON. */
import type { SmokeReport } from './checks'

const WIDTH = 110

/** Wraps text at spaces to lines of at most `width` characters (a longer word stays whole). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  lines.push(line)
  return lines
}

export function formatTable(report: SmokeReport): string {
  const rows = report.results
  const checkW = Math.max(5, ...rows.map((r) => r.check.length))
  const resultW = 6
  const msW = Math.max(2, ...rows.map((r) => (r.ms === undefined ? 0 : String(Math.round(r.ms)).length)))
  const detailW = Math.max(40, WIDTH - checkW - resultW - msW - 6)
  const out: string[] = []
  out.push(`smoke: ${report.url}${report.organization ? `  (organization ${report.organization}${report.posture ? `, ${report.posture} posture` : ''})` : ''}`)
  out.push('')
  out.push(`${'check'.padEnd(checkW)}  ${'result'.padEnd(resultW)}  ${'ms'.padStart(msW)}  detail`)
  out.push(`${'-'.repeat(checkW)}  ${'-'.repeat(resultW)}  ${'-'.repeat(msW)}  ${'-'.repeat(Math.min(detailW, 40))}`)
  for (const r of rows) {
    const ms = r.ms === undefined ? '' : String(Math.round(r.ms))
    const [head, ...rest] = wrap(r.detail, detailW)
    out.push(`${r.check.padEnd(checkW)}  ${r.result.padEnd(resultW)}  ${ms.padStart(msW)}  ${head}`)
    for (const line of rest) out.push(`${' '.repeat(checkW + resultW + msW + 6)}${line}`)
  }
  out.push('')
  const count = (result: string) => rows.filter((r) => r.result === result).length
  const failures = rows.filter((r) => r.result === 'fail')
  for (const f of failures) out.push(`FAIL ${f.check}: ${f.detail}`)
  out.push(
    `${failures.length ? 'FAILED' : 'OK'}: ${count('pass')} passed, ${failures.length} failed` +
      `${count('info') ? `, ${count('info')} info` : ''}${count('n/a') ? `, ${count('n/a')} n/a` : ''}${count('skip') ? `, ${count('skip')} skipped` : ''} in ${(report.total_ms / 1000).toFixed(1)} s`,
  )
  return out.join('\n')
}

export const formatJson = (report: SmokeReport) => JSON.stringify(report, null, 2)

/**
 * CSV as RFC 4180: CRLF line ends, every field quoted when it holds a comma, a quote, CR or LF
 * (quotes doubled). Cells that a spreadsheet would run as a formula (starting with = + - @, or a tab
 * or CR) get a leading apostrophe, so an attacker-chosen name cannot become a formula.
 */

const FORMULA_START = /^[=+\-@\t\r]/;

export function csvCell(value: unknown): string {
  let s = value === null || value === undefined ? '' : String(value);
  if (FORMULA_START.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(headers: string[], rows: unknown[][]): string {
  return [headers, ...rows].map((r) => r.map(csvCell).join(',')).join('\r\n') + '\r\n';
}

import { inflateSync } from 'node:zlib';

/**
 * The text of a PDF, in pure Node (enough for pdfkit's output): inflate every content stream and
 * collect the strings shown by Tj and TJ, one line per text-showing operator.
 */
export function pdfText(pdf: Buffer): string {
  const out: string[] = [];
  const raw = pdf.toString('latin1');
  const re = /stream\r?\n/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(raw))) {
    const start = m.index + m[0].length;
    const end = raw.indexOf('endstream', start);
    if (end < 0) break;
    const bytes = pdf.subarray(start, end);
    let content: string;
    try {
      content = inflateSync(bytes).toString('latin1');
    } catch {
      content = bytes.toString('latin1');
    }
    out.push(...showText(content));
    re.lastIndex = end;
  }
  return out.join('\n');
}

function decodeLiteral(s: string): string {
  return s.replace(/\\([nrtbf()\\]|[0-7]{1,3})/g, (_, e: string) => {
    const map: Record<string, string> = {
      n: '\n',
      r: '\r',
      t: '\t',
      b: '\b',
      f: '\f',
      '(': '(',
      ')': ')',
      '\\': '\\',
    };
    return map[e] ?? String.fromCharCode(parseInt(e, 8));
  });
}

function showText(content: string): string[] {
  const lines: string[] = [];
  const ops = /(\[(?:[^\]\\]|\\.)*\]\s*TJ|(?:<[0-9a-fA-F\s]*>|\((?:[^)\\]|\\.)*\))\s*Tj)/g;
  let m: RegExpExecArray | null;
  while ((m = ops.exec(content))) {
    const parts = m[0].match(/<[0-9a-fA-F\s]*>|\((?:[^)\\]|\\.)*\)/g) ?? [];
    lines.push(
      parts
        .map((p) =>
          p.startsWith('<')
            ? Buffer.from(p.slice(1, -1).replace(/\s/g, ''), 'hex').toString('latin1')
            : decodeLiteral(p.slice(1, -1)),
        )
        .join(''),
    );
  }
  return lines;
}

/** Parse RFC 4180 CSV (quoted fields, doubled quotes, CRLF) into rows of cells. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
      i++;
    } else if (c === '\n' || c === '"') throw new Error(`not RFC 4180 at offset ${i}`);
    else cell += c;
  }
  if (cell !== '' || row.length) throw new Error('the last record does not end with CRLF');
  return rows;
}

/**
 * `npm run bench:web`: builds the dashboard if needed and measures what the first screen loads:
 * the JavaScript and CSS that index.html references (and their static imports), raw and gzip -9.
 * Target: initial JavaScript <= 250 KB gzip.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { ensureWebBuild, WEB_DIST } from '../apps/web/build/ensure-build.ts';

const TARGET_JS_GZIP = 250 * 1024;

await ensureWebBuild((m) => console.log(m));
const html = await readFile(path.join(WEB_DIST, 'index.html'), 'utf8');
const refs = [...html.matchAll(/(?:src|href)="(\/assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]!);
const seen = new Set<string>();
const queue = [...refs];
const rows: { file: string; raw: number; gzip: number }[] = [];
while (queue.length) {
  const ref = queue.shift()!;
  if (seen.has(ref)) continue;
  seen.add(ref);
  const body = await readFile(path.join(WEB_DIST, ref));
  rows.push({ file: ref, raw: body.length, gzip: gzipSync(body, { level: 9 }).length });
  // Static imports of other chunks load with the first screen too.
  if (ref.endsWith('.js')) {
    for (const m of body
      .toString()
      .matchAll(/(?:^|[;\s])import\s*(?:[^'"()]*?from\s*)?["'](\.\/[^"']+\.js)["']/g)) {
      queue.push(path.posix.join(path.posix.dirname(ref), m[1]!));
    }
  }
}
const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
for (const r of rows)
  console.log(`${r.file.padEnd(40)} ${kb(r.raw).padStart(10)} raw ${kb(r.gzip).padStart(10)} gzip`);
const js = rows.filter((r) => r.file.endsWith('.js')).reduce((s, r) => s + r.gzip, 0);
const css = rows.filter((r) => r.file.endsWith('.css')).reduce((s, r) => s + r.gzip, 0);
console.log(`initial JavaScript: ${kb(js)} gzip (target <= ${kb(TARGET_JS_GZIP)}); CSS: ${kb(css)} gzip`);
if (js > TARGET_JS_GZIP) {
  console.error('over the target');
  process.exitCode = 1;
}

import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';

const WEB = path.resolve(import.meta.dirname, '..');
export const WEB_DIST = path.join(WEB, 'dist');
const SOURCES = ['src', 'public', 'build', 'index.html', 'vite.config.ts'];

function newest(p: string): number {
  const s = statSync(p, { throwIfNoEntry: false });
  if (!s) return 0;
  if (!s.isDirectory()) return s.mtimeMs;
  return Math.max(0, ...readdirSync(p).map((f) => newest(path.join(p, f))));
}

/** True when dist is missing or older than any source of the dashboard. */
export function webBuildIsStale(): boolean {
  const built = statSync(path.join(WEB_DIST, 'index.html'), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  return built === 0 || Math.max(...SOURCES.map((s) => newest(path.join(WEB, s)))) > built;
}

/** Build the dashboard (apps/web/dist) when it is missing or stale. */
export async function ensureWebBuild(log: (m: string) => void = () => {}): Promise<void> {
  if (!webBuildIsStale()) return;
  log('building the web dashboard (apps/web/dist)…');
  const { build } = await import('vite');
  // A production build even when called from a test runner (which sets NODE_ENV=test).
  const nodeEnv = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({
      root: WEB,
      configFile: path.join(WEB, 'vite.config.ts'),
      logLevel: 'warn',
      mode: 'production',
    });
  } finally {
    if (nodeEnv === undefined) delete process.env.NODE_ENV;
    else process.env.NODE_ENV = nodeEnv;
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  await ensureWebBuild((m) => console.log(m));
}

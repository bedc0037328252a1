import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error plain JavaScript (run by bin/steward.js before any TypeScript loader), no types
import { ensureServerBuild, SERVER_DIST, serverBuildIsStale } from '../build/server-build.js';

// The compiled server that bin/steward.js runs (apps/server/build/server-build.js).

const files = () => readdirSync(SERVER_DIST as string).filter((f) => f.endsWith('.js'));
const read = (f: string) => readFileSync(path.join(SERVER_DIST as string, f), 'utf8');

/** The output files a file loads at once (static imports of other chunks), transitively. */
function staticClosure(start: string[]): Set<string> {
  const seen = new Set<string>();
  const todo = [...start];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const m of read(f).matchAll(/^import\s[^;]*?from\s*"\.\/([^"]+)";?$/gm)) todo.push(m[1]!);
    for (const m of read(f).matchAll(/^import\s*"\.\/([^"]+)";?$/gm)) todo.push(m[1]!);
  }
  return seen;
}

describe('server build', () => {
  beforeAll(async () => {
    await ensureServerBuild();
  }, 120_000);

  it('is fresh after ensureServerBuild', () => {
    expect(serverBuildIsStale()).toBe(false);
    expect(files()).toContain('steward.js');
  });

  it('points every import.meta location at an existing source file or directory', () => {
    let rewritten = 0;
    for (const f of files()) {
      const text = read(f);
      // Only the rewritten forms remain: the bundle's own location would be wrong for the sources.
      expect(text, f).not.toMatch(/import\.meta\.(dirname|filename)/);
      for (const m of text.matchAll(
        /new URL\("([^"]+)", import\.meta\.url\)|__stewardSourcePath\("([^"]+)"\)/g,
      )) {
        const rel = m[1] ?? m[2]!;
        rewritten++;
        expect(existsSync(fileURLToPath(new URL(rel, `file://${SERVER_DIST}/`))), rel).toBe(true);
      }
    }
    // migrate.ts, backup.ts, web-routes.ts and backup-commands.ts at least.
    expect(rewritten).toBeGreaterThanOrEqual(4);
  });

  it('loads optional libraries only on first use, not when the API starts', () => {
    // What `steward serve` loads at start: the CLI, then (imported on demand) the server process and
    // the Fastify app, each with the chunks it imports statically.
    const dynamicChunk = (from: Set<string>, name: string) => {
      for (const f of from) {
        const m = new RegExp(`import\\("\\./(${name}-[A-Z0-9]+\\.js)"\\)`).exec(read(f));
        if (m) return m[1]!;
      }
      throw new Error(`no dynamic import of ${name}`);
    };
    const cli = staticClosure(['steward.js']);
    const serverProcess = staticClosure([dynamicChunk(cli, 'server-process')]);
    const app = staticClosure([dynamicChunk(serverProcess, 'app')]);
    const atStart = new Set([...cli, ...serverProcess, ...app]);
    const imported = [...atStart].flatMap((f) =>
      [...read(f).matchAll(/^import\s(?:[^;]*?from\s*)?"([^".][^"]*)";?$/gm)].map((m) => m[1]!),
    );
    for (const lazy of [
      'pdfkit',
      'mailparser',
      'nodemailer',
      '@simplewebauthn/server',
      '@aws-sdk/client-kms',
      '@node-saml/node-saml',
      'openid-client',
      '@modelcontextprotocol/sdk/client/index.js',
      'imapflow',
      'web-push',
      'ai',
    ])
      expect(imported, lazy).not.toContain(lazy);
    expect(imported).toContain('fastify');
  });
});

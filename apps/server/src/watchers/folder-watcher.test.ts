import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  fileSubject,
  inboxPath,
  PROCESSED_DIR,
  startFolderWatcher,
  type FolderWatcherHandle,
} from '@steward/core/watchers/folder-watcher';
import { createTenantFixture, createTestApp, type TenantFixture, type TestApp } from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let watcher: FolderWatcherHandle;
let inboxA: string;

interface EventRow {
  external_id: string;
  task_id: string;
  subject: string | null;
  body: string | null;
  sender: string | null;
  type: string;
  data: Record<string, unknown>;
}

const events = (tenantId: string) =>
  t.db.owner<EventRow[]>`
    select external_id, task_id, subject, body, sender, type, data from events
    where tenant_id = ${tenantId} and source = 'folder' order by received_at`;

async function until<T>(check: () => Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'inbox-a');
  b = await createTenantFixture(t, 'inbox-b');
  inboxA = inboxPath(t.config.dataDir, 'inbox-a');
  // A short scan interval only speeds up the "new tenant" case; drops rely on notifications.
  watcher = startFolderWatcher(t.res, { scanMs: 500, maxBytes: 4096 });
  await watcher.ready;
});
afterAll(async () => {
  await watcher?.stop();
  await t?.close();
});

describe('the folder watcher', () => {
  it('creates the inbox of every active tenant', async () => {
    await expect(readdir(inboxA)).resolves.toBeDefined();
    await expect(readdir(inboxPath(t.config.dataDir, 'inbox-b'))).resolves.toBeDefined();
  });

  it('turns a dropped markdown file into a task quickly, and moves it to .processed', async () => {
    const started = Date.now();
    await writeFile(
      path.join(inboxA, 'invoice.md'),
      '# Invoice 42 from ACME\n\nPlease pay $120 by Friday.\n',
    );
    const [e] = await until(async () => {
      const rows = await events(a.tenant.id);
      return rows.length ? rows : undefined;
    });
    const elapsed = Date.now() - started;
    expect(e).toMatchObject({
      type: 'file',
      sender: 'folder',
      subject: 'Invoice 42 from ACME',
      body: '# Invoice 42 from ACME\n\nPlease pay $120 by Friday.\n',
      data: { file: 'invoice.md' },
    });
    expect(e!.external_id).toMatch(/^[0-9a-f]{64}$/);
    const [task] = await t.db.owner<{ status: string; source: string; title: string }[]>`
      select status, source, title from tasks where tenant_id = ${a.tenant.id} and id = ${e!.task_id}`;
    expect(task).toMatchObject({ source: 'folder', title: 'Invoice 42 from ACME' });
    // Generous bound (the design target is well under a second).
    expect(elapsed).toBeLessThan(8000);
    // Moved out of the inbox.
    await until(async () => !(await readdir(inboxA)).includes('invoice.md'));
    const processed = await readdir(path.join(inboxA, PROCESSED_DIR));
    expect(processed.some((f) => f.endsWith('-invoice.md'))).toBe(true);
    // Nothing went to tenant B.
    expect(await events(b.tenant.id)).toHaveLength(0);
  });

  it('the same file dropped again is the same task; an edited file is a new one', async () => {
    const content = 'Renew the domain example.com before it expires.\n';
    await writeFile(path.join(inboxA, 'renew.txt'), content);
    const first = await until(async () =>
      (await events(a.tenant.id)).find((e) => e.data.file === 'renew.txt'),
    );
    await until(async () => !(await readdir(inboxA)).includes('renew.txt'));

    await writeFile(path.join(inboxA, 'renew.txt'), content);
    await until(async () => !(await readdir(inboxA)).includes('renew.txt'));
    const afterSame = (await events(a.tenant.id)).filter((e) => e.data.file === 'renew.txt');
    expect(afterSame).toHaveLength(1);
    expect(afterSame[0]!.task_id).toBe(first.task_id);
    // Both copies were moved (the second as a duplicate).
    const processed = await readdir(path.join(inboxA, PROCESSED_DIR));
    expect(processed.filter((f) => f.endsWith('-renew.txt'))).toHaveLength(2);

    await writeFile(path.join(inboxA, 'renew.txt'), content + 'Also renew the certificate.\n');
    const edited = await until(async () => {
      const rows = (await events(a.tenant.id)).filter((e) => e.data.file === 'renew.txt');
      return rows.length === 2 ? rows : undefined;
    });
    expect(edited[1]!.task_id).not.toBe(first.task_id);
    expect(edited[1]!.subject).toBe('renew.txt');
  });

  it('takes the front-matter title, notes files that are too large, and leaves other files alone', async () => {
    await writeFile(
      path.join(inboxA, 'meeting.md'),
      '---\ntitle: Board meeting notes\ntags: [board]\n---\n# Heading\nbody\n',
    );
    await writeFile(path.join(inboxA, 'huge.txt'), 'x'.repeat(10_000));
    await writeFile(path.join(inboxA, 'photo.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    await writeFile(path.join(inboxA, '.hidden.md'), '# hidden');
    await writeFile(path.join(inboxA, 'nul.txt'), 'before\0after');
    await writeFile('/tmp/steward-folder-watcher-secret.txt', 'host secret');
    await symlink('/tmp/steward-folder-watcher-secret.txt', path.join(inboxA, 'link.txt')).catch(() => {});
    const rows = await until(async () => {
      const all = await events(a.tenant.id);
      const files = new Set(all.map((e) => e.data.file));
      return files.has('meeting.md') && files.has('huge.txt') && files.has('nul.txt') ? all : undefined;
    });
    expect(rows.find((e) => e.data.file === 'meeting.md')!.subject).toBe('Board meeting notes');
    const huge = rows.find((e) => e.data.file === 'huge.txt')!;
    expect(huge.body).toMatch(/too large/);
    expect(huge.data).toMatchObject({ tooLarge: true, size: 10_000 });
    expect(rows.find((e) => e.data.file === 'nul.txt')!.body).toBe('beforeafter');
    // Give the watcher time to (wrongly) take the others, then check it did not.
    await sleep(1500);
    const files = (await events(a.tenant.id)).map((e) => e.data.file);
    expect(files).not.toContain('photo.png');
    expect(files).not.toContain('.hidden.md');
    expect(files).not.toContain('link.txt');
    const left = await readdir(inboxA);
    expect(left).toEqual(expect.arrayContaining(['photo.png', '.hidden.md', 'link.txt']));
    expect(await readFile('/tmp/steward-folder-watcher-secret.txt', 'utf8')).toBe('host secret');
  });

  it('picks up the inbox of a tenant created while it runs, and files dropped before it started', async () => {
    const dir = inboxPath(t.config.dataDir, 'inbox-late');
    await mkdir(dir, { recursive: true });
    await writeFile(path.join(dir, 'waiting.md'), '# Was here first\n');
    const late = await createTenantFixture(t, 'inbox-late');
    const [e] = await until(async () => {
      const rows = await events(late.tenant.id);
      return rows.length ? rows : undefined;
    });
    expect(e!.subject).toBe('Was here first');
  });
});

describe('file subjects', () => {
  it('front matter, then the first heading (markdown only), then the name', () => {
    expect(fileSubject('a.md', '---\ntitle: "From YAML"\n---\n# Heading')).toBe('From YAML');
    expect(fileSubject('a.md', '---\nnot: a title\n---\n\n## Second level  \ntext')).toBe('Second level');
    expect(fileSubject('a.md', 'no heading here')).toBe('a.md');
    expect(fileSubject('a.txt', '# looks like a heading')).toBe('a.txt');
    expect(fileSubject('a.md', '---\n: [broken\n---\n# Fallback')).toBe('Fallback');
    expect(fileSubject('a.md', `# ${'long '.repeat(100)}`).length).toBeLessThanOrEqual(300);
  });
});

import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { messageToEvent } from '@steward/core/email/imap-watcher';
import { planTask } from '@steward/core/planner/plan-task';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { submitEvent } from '@steward/core/tasks/task-service';
import {
  fileSubject,
  inboxPath,
  PROCESSED_DIR,
  startFolderWatcher,
  type FolderWatcherHandle,
} from '@steward/core/watchers/folder-watcher';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

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

/** A saved e-mail: a text part and a PDF attachment (base64). */
function eml(opts: { messageId?: string; subject: string; attachment: Buffer }): string {
  return [
    'From: "ACME Billing" <billing@acme.test>',
    'To: Books <books@inbox-a.test>, ceo@inbox-a.test',
    'Cc: audit@inbox-a.test',
    `Subject: ${opts.subject}`,
    ...(opts.messageId ? [`Message-ID: ${opts.messageId}`] : []),
    'Date: Tue, 01 Dec 2026 09:30:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b1"',
    '',
    '--b1',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: quoted-printable',
    '',
    'Hello, please find invoice 77 attached. Amount due: =E2=82=AC480.',
    '',
    '--b1',
    'Content-Type: application/pdf; name="invoice-77.pdf"',
    'Content-Disposition: attachment; filename="invoice-77.pdf"',
    'Content-Transfer-Encoding: base64',
    '',
    ...(opts.attachment.toString('base64').match(/.{1,76}/g) ?? []),
    '--b1--',
    '',
  ].join('\r\n');
}

describe('.eml files in the inbox', () => {
  const emailEvents = (tenantId: string) =>
    t.db.owner<(EventRow & { source: string })[]>`
      select source, external_id, task_id, subject, body, sender, type, data from events
      where tenant_id = ${tenantId} and source = 'email' order by received_at`;

  it('become the same e-mail event as an IMAP message: addresses, subject, text, attachments by name and size', async () => {
    const attachment = Buffer.from('%PDF-1.4 SECRET-ATTACHMENT-CONTENT '.repeat(40));
    const messageId = '<invoice-77@acme.test>';
    await writeFile(
      path.join(inboxA, 'invoice-77.eml'),
      eml({ messageId, subject: 'Invoice 77 from ACME', attachment }),
    );
    const e = await until(async () =>
      (await emailEvents(a.tenant.id)).find((x) => x.external_id === messageId),
    );
    expect(e).toMatchObject({
      source: 'email',
      type: 'message',
      sender: 'billing@acme.test',
      subject: 'Invoice 77 from ACME',
      data: {
        to: ['books@inbox-a.test', 'ceo@inbox-a.test'],
        cc: ['audit@inbox-a.test'],
        date: '2026-12-01T09:30:00.000Z',
        file: 'invoice-77.eml',
        attachments: [
          { filename: 'invoice-77.pdf', contentType: 'application/pdf', size: attachment.length },
        ],
      },
    });
    expect(e.body!.trim()).toBe('Hello, please find invoice 77 attached. Amount due: €480.');
    // The attachment is listed, never inlined.
    expect(JSON.stringify(e)).not.toContain('SECRET-ATTACHMENT-CONTENT');
    expect(JSON.stringify(e)).not.toContain(attachment.toString('base64').slice(0, 40));
    const [task] = await t.db.owner<{ source: string; title: string }[]>`
      select source, title from tasks where tenant_id = ${a.tenant.id} and id = ${e.task_id}`;
    expect(task).toMatchObject({ source: 'email', title: 'Invoice 77 from ACME' });
    await until(async () => !(await readdir(inboxA)).includes('invoice-77.eml'));
    expect((await readdir(path.join(inboxA, PROCESSED_DIR))).some((f) => f.endsWith('-invoice-77.eml'))).toBe(
      true,
    );

    // Exactly what the IMAP watcher makes of the same message, but for where it came from.
    const raw = Buffer.from(eml({ messageId, subject: 'Invoice 77 from ACME', attachment }));
    const fromImap = await messageToEvent(raw, 1, 7, 'INBOX');
    expect({ ...fromImap, data: { ...fromImap.data, mailbox: undefined, uid: undefined } }).toEqual({
      source: e.source,
      type: e.type,
      externalId: e.external_id,
      from: e.sender,
      subject: e.subject,
      body: e.body,
      data: { ...e.data, file: undefined, size: undefined, mailbox: undefined, uid: undefined },
    });
    // ...so the Message-ID dedupes across both: received over IMAP as well, it is the same task.
    const again = await submitEvent(t.res, a.tenant.id, SYSTEM_ACTOR, fromImap);
    expect(again).toMatchObject({ duplicate: true, taskId: e.task_id });
  });

  it('the same message dropped twice is one task; without a Message-ID the file content identifies it', async () => {
    const attachment = Buffer.from('tiny');
    await writeFile(
      path.join(inboxA, 'dup-1.eml'),
      eml({ messageId: '<dup@acme.test>', subject: 'Dup', attachment }),
    );
    await until(async () => !(await readdir(inboxA)).includes('dup-1.eml'));
    await writeFile(
      path.join(inboxA, 'dup-2.eml'),
      eml({ messageId: '<dup@acme.test>', subject: 'Dup', attachment }),
    );
    await until(async () => !(await readdir(inboxA)).includes('dup-2.eml'));
    expect((await emailEvents(a.tenant.id)).filter((x) => x.subject === 'Dup')).toHaveLength(1);

    await writeFile(path.join(inboxA, 'no-id.eml'), eml({ subject: 'No id', attachment }));
    const e = await until(async () => (await emailEvents(a.tenant.id)).find((x) => x.subject === 'No id'));
    expect(e.external_id).toMatch(/^folder:[0-9a-f]{64}$/);
  });

  it('playbook conditions on the sender and subject apply to a dropped e-mail', async () => {
    expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/playbooks',
        headers: bearer(a.token),
        payload: {
          name: 'ACME invoices',
          when: { source: ['email'], from: { endsWith: '@acme.test' }, subject: { contains: 'quarterly' } },
          steps: [
            { key: 'file', tool: 'noop', args: { note: 'filed {{event.subject}} from {{event.from}}' } },
          ],
        },
      }),
      201,
    );
    await writeFile(
      path.join(inboxA, 'q4.eml'),
      eml({ messageId: '<q4@acme.test>', subject: 'Your quarterly statement', attachment: Buffer.from('x') }),
    );
    await writeFile(
      path.join(inboxA, 'other.eml'),
      eml({ messageId: '<other@acme.test>', subject: 'Newsletter', attachment: Buffer.from('x') }),
    );
    const rows = await until(async () => {
      const all = await emailEvents(a.tenant.id);
      const q4 = all.find((x) => x.external_id === '<q4@acme.test>');
      const other = all.find((x) => x.external_id === '<other@acme.test>');
      return q4 && other ? { q4, other } : undefined;
    });
    await planTask(t.res, a.tenant.id, rows.q4.task_id);
    await planTask(t.res, a.tenant.id, rows.other.task_id);
    const steps = await t.db.owner<{ task_id: string; tool: string; args: { note: string } }[]>`
      select task_id, tool, args from steps where tenant_id = ${a.tenant.id}
        and task_id in (${rows.q4.task_id}, ${rows.other.task_id})`;
    expect(steps).toEqual([
      {
        task_id: rows.q4.task_id,
        tool: 'noop',
        args: { note: 'filed Your quarterly statement from billing@acme.test' },
      },
    ]);
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

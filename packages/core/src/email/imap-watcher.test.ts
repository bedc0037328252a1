import { randomUUID } from 'node:crypto';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createTenantFixture,
  createTestApp,
  type TenantFixture,
  type TestApp,
} from '../../../../apps/server/src/testing/test-app.ts';
import { ImapWatcher, type ImapAccount } from './imap-watcher.ts';
import { dovecotMissing, startDovecot, type Dovecot } from './testing/dovecot.ts';

// A real Dovecot from Debian's packages; .ci/run installs it. Without it the file is skipped with
// the reason printed (never silently).
const missing = dovecotMissing();
if (missing) console.warn(`SKIPPING the IMAP tests: ${missing}`);

describe.skipIf(!!missing)('IMAP watcher on a real Dovecot', () => {
  let dovecot: Dovecot;
  let t: TestApp;
  let a: TenantFixture;
  let account: ImapAccount;
  const watchers: ImapWatcher[] = [];

  beforeAll(async () => {
    dovecot = await startDovecot();
    t = await createTestApp();
    a = await createTenantFixture(t, 'mailco');
    const connectionId = randomUUID();
    await t.res.db.withTenant(
      a.tenant.id,
      (tx) => tx`
      insert into connections (tenant_id, id, kind, name, config)
      values (${a.tenant.id}, ${connectionId}, 'imap', 'inbox', ${tx.json({ host: dovecot.host, port: dovecot.port })})`,
    );
    account = {
      tenantId: a.tenant.id,
      connectionId,
      host: dovecot.host,
      port: dovecot.port,
      secure: false,
      username: dovecot.user,
      password: dovecot.password,
      mailbox: 'INBOX',
    };
  });
  afterAll(async () => {
    for (const w of watchers) await w.stop();
    await t?.close();
    await dovecot?.stop();
  });

  async function deliver(subject: string, messageId = `<${randomUUID()}@vendor.test>`) {
    const client = new ImapFlow({
      host: dovecot.host,
      port: dovecot.port,
      secure: false,
      auth: { user: dovecot.user, pass: dovecot.password },
      logger: false,
    });
    await client.connect();
    const raw = [
      'From: Billing <billing@vendor.test>',
      `To: ${dovecot.user}`,
      `Subject: ${subject}`,
      `Message-ID: ${messageId}`,
      'Date: Sun, 22 Nov 2026 01:00:00 +0000',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `Hello, this is ${subject}. Amount due: $120.`,
      '',
    ].join('\r\n');
    await client.append('INBOX', raw);
    await client.logout();
    return messageId;
  }

  async function tasksWithSubject(subject: string) {
    return t.res.db.withTenant(
      a.tenant.id,
      (tx) => tx<{ id: string; source: string; external_id: string; sender: string; body: string }[]>`
      select t.id, e.source, e.external_id, e.sender, e.body from tasks t join events e on e.tenant_id = t.tenant_id and e.task_id = t.id
      where t.tenant_id = ${a.tenant.id} and t.title = ${subject}`,
    );
  }

  async function waitForTask(subject: string, ms = 20_000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const rows = await tasksWithSubject(subject);
      if (rows.length) return rows;
      if (Date.now() > deadline) throw new Error(`no task for "${subject}"`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  function watcher() {
    const w = new ImapWatcher(t.res, account, {
      pollIntervalMs: 60_000,
      reconnectMinMs: 200,
      reconnectMaxMs: 1000,
    });
    watchers.push(w);
    w.start();
    return w;
  }

  it('turns a waiting message into a task, then new ones as they arrive (IDLE)', async () => {
    const id = await deliver('Invoice 1');
    const w = watcher();
    const [task] = await waitForTask('Invoice 1');
    expect(task).toMatchObject({ source: 'email', external_id: id, sender: 'billing@vendor.test' });
    expect(task!.body).toContain('Amount due: $120.');
    // Polling is set to a minute here, so only IDLE can deliver this one in time.
    await deliver('Invoice 2');
    await waitForTask('Invoice 2');
    await w.stop();
  });

  it('resumes after a restart without repeating messages', async () => {
    await deliver('Invoice 3');
    const w = watcher();
    await waitForTask('Invoice 3');
    await new Promise((r) => setTimeout(r, 300));
    expect(w.processed).toBe(1); // only the new message, not 1 and 2 again
    expect(await tasksWithSubject('Invoice 1')).toHaveLength(1);
    await w.stop();
  });

  it('reconnects after the server goes away', async () => {
    const w = watcher();
    await new Promise((r) => setTimeout(r, 300));
    await dovecot.restart();
    await deliver('Invoice 4');
    await waitForTask('Invoice 4');
    await w.stop();
  });

  it('one task per Message-ID, even when the message is delivered twice', async () => {
    const id = `<${randomUUID()}@vendor.test>`;
    await deliver('Duplicate', id);
    await deliver('Duplicate', id);
    const w = watcher();
    await waitForTask('Duplicate');
    await new Promise((r) => setTimeout(r, 500));
    expect(await tasksWithSubject('Duplicate')).toHaveLength(1);
    await w.stop();
  });
});

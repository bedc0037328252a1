import { mkdir, readdir, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HANDBOOK_STARTER, readHandbook } from '@steward/core/vault/handbook';
import { parseFrontMatter } from '@steward/core/vault/vault-files';
import { VaultSyncer } from '@steward/core/vault/vault-syncer';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';
import { startWorker, type WorkerHandle } from './worker/worker-runner.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let worker: WorkerHandle;
let syncer: VaultSyncer;
let ownerId: string;

const api = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

const vault = (slug: string, ...parts: string[]) =>
  path.join(t.config.dataDir, 'tenants', slug, 'vault', ...parts);

async function waitUntil<T>(
  what: string,
  fn: () => Promise<T | undefined | null | false>,
  ms = 15_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface Note {
  file: string;
  data: Record<string, unknown>;
  body: string;
}

async function notes(slug: string, folder: string): Promise<Note[]> {
  const dir = vault(slug, folder);
  if (!existsSync(dir)) return [];
  const out: Note[] = [];
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.md')) continue;
    const text = await readFile(path.join(dir, name), 'utf8').catch(() => null);
    const parsed = text ? parseFrontMatter(text) : null;
    if (parsed) out.push({ file: path.join(dir, name), ...parsed });
  }
  return out;
}

/** A note of Steward's in a folder: a task note by task_id, an approval note by approval_id or task_id. */
const noteOf = async (slug: string, folder: string, key: string, id: string) =>
  (await notes(slug, folder)).find(
    (n) =>
      n.data[key] === id &&
      n.data.type === (key === 'approval_id' || folder === 'Pending_Approval' ? 'approval' : 'task'),
  );

async function playbook(token: string) {
  expectStatus(
    await api(
      'POST',
      '/playbooks',
      {
        name: 'Pay invoices',
        when: { subject: { contains: 'invoice' } },
        steps: [
          {
            key: 'file',
            tool: 'vault.write_note',
            args: { title: 'Invoice {{event.externalId}}', body: 'x' },
          },
          {
            key: 'pay',
            tool: 'noop',
            args: { note: 'pay {{extracted.amount}}' },
            risk: 'high',
            dependsOn: ['file'],
          },
        ],
      },
      token,
    ),
    201,
  );
}

async function submit(f: TenantFixture, externalId: string, subject: string): Promise<string> {
  return expectStatus(
    await api(
      'POST',
      '/events',
      {
        source: 'email',
        type: 'message',
        externalId,
        from: 'billing@vendor.test',
        subject,
        body: 'Amount due: $120.00',
      },
      f.apiKey,
    ),
    202,
  ).json().taskId;
}

const task = async (id: string, token = a.token) =>
  expectStatus(await api('GET', `/tasks/${id}`, undefined, token), 200).json();

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'vault-a');
  b = await createTenantFixture(t, 'vault-b');
  ownerId = expectStatus(await api('GET', '/me'), 200).json().user.id;
  expectStatus(await api('PATCH', '/tenant', { settings: { vault: { user: a.ownerEmail } } }), 200);
  await playbook(a.token);
  await playbook(b.token);
  worker = await startWorker(t.res, { appUrl: t.runtime.appUrl, concurrency: 4, pollIntervalMs: 200 });
  syncer = new VaultSyncer(t.res, { intervalMs: 100, fullSyncMs: 500 });
  await syncer.start();
});
afterAll(async () => {
  await syncer?.stop();
  await worker?.stop();
  await t?.close();
});

describe('the vault mirror', () => {
  it('shows a task in the folder of its state and approves it when its note is moved to Approved/', async () => {
    const taskId = await submit(a, 'inv-1', 'Your invoice 1');
    const pending = await waitUntil('the approval note', () =>
      noteOf('vault-a', 'Pending_Approval', 'task_id', taskId),
    );
    const approval = (await task(taskId)).approvals[0];
    expect(pending.data).toMatchObject({
      type: 'approval',
      approval_id: approval.id,
      task_id: taskId,
      tool: 'noop',
      action_hash: approval.actionHash,
      expires_at: approval.expiresAt,
      status: 'pending',
    });
    expect(path.basename(pending.file)).toBe(`${approval.id}.md`);
    expect(pending.body).toContain('"note": "pay 120"');
    expect(pending.body).toContain('## Preview');

    // The plan note follows the task through planning/approved to pending_approval.
    const plan = await waitUntil('the plan note', async () => {
      const n = await noteOf('vault-a', 'Plans', 'task_id', taskId);
      return n?.data.status === 'pending_approval' && n;
    });
    expect(plan.data).toMatchObject({ type: 'task', status: 'pending_approval', title: 'Your invoice 1' });
    expect(plan.body).toMatch(/- \[x\] `file` vault\.write_note/);
    expect(plan.body).toMatch(/- \[ \] `pay` noop .*awaiting_approval/);
    // A sync writes the notes of the new state, then prunes the old ones: the old note goes soon after.
    await waitUntil('the Needs_Action note to go', async () =>
      (await noteOf('vault-a', 'Needs_Action', 'task_id', taskId)) === undefined ? true : undefined,
    );

    await rename(pending.file, vault('vault-a', 'Approved', path.basename(pending.file)));
    const done = await waitUntil('the task to finish', async () => {
      const x = await task(taskId);
      return ['done', 'failed', 'rejected'].includes(x.status) && x;
    });
    expect(done.status).toBe('done');
    const doneNote = await waitUntil('the done note', () => noteOf('vault-a', 'Done', 'task_id', taskId));
    expect(doneNote.data).toMatchObject({ type: 'task', status: 'done' });
    expect(doneNote.body).toContain('## Outcome');
    await waitUntil(
      'the plan note to go',
      async () => !(await noteOf('vault-a', 'Plans', 'task_id', taskId)),
    );
    await waitUntil(
      'the pending note to go',
      async () => !(await noteOf('vault-a', 'Pending_Approval', 'approval_id', approval.id)),
    );
    const record = await waitUntil('the approved record', () =>
      noteOf('vault-a', 'Approved', 'approval_id', approval.id),
    );
    expect(record.data.status).toBe('approved');

    const audit = expectStatus(await api('GET', '/audit?limit=200'), 200).json();
    const entry = audit.items.find(
      (e: { action: string; targetId: string }) =>
        e.action === 'approval.approved' && e.targetId === approval.id,
    );
    expect(entry).toMatchObject({
      actorType: 'user',
      actorId: ownerId,
      actorLabel: `${a.ownerEmail} (vault)`,
    });
    expect(entry.details.comment).toContain('vault');
    const decided = expectStatus(await api('GET', `/approvals/${approval.id}`), 200).json();
    expect(decided.decisions[0].actorLabel).toBe(`${a.ownerEmail} (vault)`);
  });

  it('rejects when the note is moved to Rejected/', async () => {
    const taskId = await submit(a, 'inv-2', 'Your invoice 2');
    const pending = await waitUntil('the approval note', () =>
      noteOf('vault-a', 'Pending_Approval', 'task_id', taskId),
    );
    await rename(pending.file, vault('vault-a', 'Rejected', path.basename(pending.file)));
    await waitUntil('the task to be rejected', async () => (await task(taskId)).status === 'rejected');
    const note = await waitUntil('the rejected task note', () =>
      noteOf('vault-a', 'Rejected', 'task_id', taskId),
    );
    expect(note.data).toMatchObject({ type: 'task', status: 'rejected' });
    const approval = expectStatus(await api('GET', `/approvals/${pending.data.approval_id}`), 200).json();
    expect(approval.status).toBe('rejected');
  });

  it('decides nothing without a vault user, or with one who may not decide, and says why', async () => {
    const taskId = await submit(b, 'inv-3', 'Your invoice 3');
    const pending = await waitUntil('the approval note', () =>
      noteOf('vault-b', 'Pending_Approval', 'task_id', taskId),
    );
    const name = path.basename(pending.file);
    await rename(pending.file, vault('vault-b', 'Approved', name));
    const errorFile = vault('vault-b', 'Approved', name.replace(/\.md$/, '.error.md'));
    await waitUntil('the error note', async () => existsSync(errorFile));
    expect(await readFile(errorFile, 'utf8')).toContain('no vault user is configured');
    await waitUntil('the note to come back', () =>
      noteOf('vault-b', 'Pending_Approval', 'approval_id', String(pending.data.approval_id)),
    );
    await waitUntil('the dashboard to explain', async () =>
      (await readFile(vault('vault-b', 'Dashboard.md'), 'utf8')).includes('no vault user is configured'),
    );
    let approval = expectStatus(
      await api('GET', `/approvals/${pending.data.approval_id}`, undefined, b.token),
      200,
    ).json();
    expect(approval.status).toBe('pending');
    expect(approval.decisions).toEqual([]);

    // A member without approvals:decide is refused too.
    await addUser(t, b.tenant.id, 'viewer@vault-b.test', 'viewer');
    expectStatus(
      await api('PATCH', '/tenant', { settings: { vault: { user: 'viewer@vault-b.test' } } }, b.token),
      200,
    );
    const again = await waitUntil('the note', () =>
      noteOf('vault-b', 'Pending_Approval', 'approval_id', String(pending.data.approval_id)),
    );
    await writeFile(errorFile, 'old'); // replaced by the next explanation
    await rename(again.file, vault('vault-b', 'Approved', name));
    await waitUntil('a new explanation', async () =>
      (await readFile(errorFile, 'utf8')).includes('may not decide approvals'),
    );
    await waitUntil('the note to come back', () =>
      noteOf('vault-b', 'Pending_Approval', 'approval_id', String(pending.data.approval_id)),
    );
    approval = expectStatus(
      await api('GET', `/approvals/${pending.data.approval_id}`, undefined, b.token),
      200,
    ).json();
    expect(approval.status).toBe('pending');
    expect((await task(taskId, b.token)).status).toBe('pending_approval');
  });

  it('refuses a note whose action hash does not match, and an approval decided already', async () => {
    const taskId = await submit(a, 'inv-4', 'Your invoice 4');
    const pending = await waitUntil('the approval note', () =>
      noteOf('vault-a', 'Pending_Approval', 'task_id', taskId),
    );
    const name = path.basename(pending.file);
    const text = await readFile(pending.file, 'utf8');
    // A copy with another hash lands in Approved/ (the original is removed, as a move would).
    await writeFile(
      vault('vault-a', 'Approved', name),
      text.replace(String(pending.data.action_hash), 'f'.repeat(64)),
    );
    await unlink(pending.file);
    const errorFile = vault('vault-a', 'Approved', name.replace(/\.md$/, '.error.md'));
    await waitUntil('the error note', async () => existsSync(errorFile));
    expect(await readFile(errorFile, 'utf8')).toContain('action_hash');
    expect((await task(taskId)).status).toBe('pending_approval');

    // Decided through the API meanwhile: a stale note moved later decides nothing.
    const fresh = await waitUntil('the note back', () =>
      noteOf('vault-a', 'Pending_Approval', 'task_id', taskId),
    );
    const stale = await readFile(fresh.file, 'utf8');
    expectStatus(
      await api('POST', `/approvals/${fresh.data.approval_id}/decision`, { decision: 'reject' }),
      200,
    );
    await writeFile(vault('vault-a', 'Approved', `stale-${name}`), stale);
    const staleError = vault('vault-a', 'Approved', `stale-${name}`.replace(/\.md$/, '.error.md'));
    await waitUntil('the stale error note', async () => existsSync(staleError));
    expect(await readFile(staleError, 'utf8')).toContain('already rejected');
    const approval = expectStatus(await api('GET', `/approvals/${fresh.data.approval_id}`), 200).json();
    expect(approval.status).toBe('rejected');
    expect(approval.decisions).toHaveLength(1);
  });

  it('creates Company_Handbook.md once and never overwrites it', async () => {
    const file = vault('vault-a', 'Company_Handbook.md');
    expect(await readFile(file, 'utf8')).toBe(HANDBOOK_STARTER);
    const rules = '# Our rules\n\n- Never pay on Fridays.\n';
    await writeFile(file, rules);
    await submit(a, 'other-1', 'Something else entirely');
    await syncer.syncNow(true);
    await syncer.syncNow(true);
    expect(await readFile(file, 'utf8')).toBe(rules);
    expect(await readHandbook(t.config.dataDir, 'vault-a')).toBe(rules);
  });

  it('keeps hostile task titles inside their folder', async () => {
    const titles = [
      '../../../../escape-a',
      '..\\..\\escape-b',
      '/etc/passwd',
      'a/../../b',
      '.hidden',
      'CON:NUL*?<>|',
    ];
    const ids: string[] = [];
    for (const [i, subject] of titles.entries()) ids.push(await submit(a, `evil-${i}`, subject));
    for (const id of ids) {
      const note = await waitUntil('the needs-action note', () =>
        noteOf('vault-a', 'Needs_Action', 'task_id', id),
      );
      expect(path.dirname(note.file)).toBe(vault('vault-a', 'Needs_Action'));
      expect(path.basename(note.file).startsWith('.')).toBe(false);
      expect(note.data.title).toBe(titles[ids.indexOf(id)]);
    }
    // Nothing was written outside the tenant's vault folders.
    const walk = async (dir: string): Promise<string[]> => {
      const out: string[] = [];
      for (const e of await readdir(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) out.push(...(await walk(p)));
        else out.push(p);
      }
      return out;
    };
    const files = await walk(t.config.dataDir);
    expect(
      files
        .filter((f) => /escape|passwd/.test(f))
        .every((f) => f.startsWith(vault('vault-a', 'Needs_Action') + path.sep)),
    ).toBe(true);
    expect(files.some((f) => f.includes('escape-a'))).toBe(true);
  });

  it('writes a dashboard with counts, waiting approvals and recent activity', async () => {
    await syncer.syncNow(true);
    const text = await readFile(vault('vault-a', 'Dashboard.md'), 'utf8');
    const dash = parseFrontMatter(text)!;
    expect(dash.data.type).toBe('dashboard');
    expect(dash.body).toMatch(/\| done \| 1 \|/);
    expect(dash.body).toMatch(/\| rejected \| 2 \|/);
    expect(dash.body).toContain('## Recent activity');
    expect(dash.body).toContain(`decided as **${a.ownerEmail}**`);
  });

  it("only touches its own notes: a person's file in a vault folder stays", async () => {
    await mkdir(vault('vault-a', 'Done'), { recursive: true });
    const mine = vault('vault-a', 'Done', 'my own note.md');
    await writeFile(mine, '# mine\n');
    await syncer.syncNow(true);
    expect(await readFile(mine, 'utf8')).toBe('# mine\n');
  });
});

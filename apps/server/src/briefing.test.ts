import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ensureWeeklyBriefing,
  isoWeek,
  nextBriefingAt,
  runWeeklyBriefing,
} from '@steward/core/vault/briefing';
import { parseFrontMatter } from '@steward/core/vault/vault-files';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;

const api = (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

const DAY = 86_400_000;
const ago = (days: number) => new Date(Date.now() - days * DAY);

/** Seed tasks of known shape straight into the tenant's tables (through RLS, as the app does). */
async function seed(tenantId: string) {
  await t.res.db.withTenant(tenantId, async (tx) => {
    const task = async (
      status: string,
      finishedDaysAgo: number | null,
      extra: { reason?: string; createdDaysAgo?: number } = {},
    ) => {
      const id = randomUUID();
      await tx`insert into tasks (tenant_id, id, title, status, source, created_by_type, needs_action_reason, created_at, finished_at)
               values (${tenantId}, ${id}, ${`seeded ${status}`}, ${status}, 'email', 'system', ${extra.reason ?? null},
                       ${ago(extra.createdDaysAgo ?? 1)}, ${finishedDaysAgo === null ? null : ago(finishedDaysAgo)})`;
      return id;
    };
    const step = async (taskId: string, key: string, code: string) => {
      const id = randomUUID();
      await tx`insert into steps (tenant_id, id, task_id, key, position, tool, args, action_hash, risk, status, idempotency_key, error, finished_at)
               values (${tenantId}, ${id}, ${taskId}, ${key}, 0, 'noop', '{}', 'h', 'low', 'dead', ${`stw-${id}`},
                       ${tx.json({ code, message: 'boom', retryable: false })}, ${ago(1)})`;
    };
    for (let i = 0; i < 3; i++) await task('done', 1);
    await task('done', 10, { createdDaysAgo: 11 }); // before the period: not counted
    const f1 = await task('failed', 2);
    const f2 = await task('failed', 3);
    await step(f1, 'a', 'HTTP_500');
    await step(f2, 'a', 'HTTP_500');
    await step(f2, 'b', 'TIMEOUT');
    await task('failed', 9, { createdDaysAgo: 9 }); // before the period
    await task('rejected', 1);
    const unmatched = await task('needs_action', null, {
      reason: 'no playbook matched this event; a person should look at it',
    });
    await tx`insert into events (tenant_id, source, type, sender, subject, task_id)
             values (${tenantId}, 'email', 'message', 'Jane <jane@acme.test>', 'hello', ${unmatched})`;
    const waiting = await task('pending_approval', null, { createdDaysAgo: 2 });
    await tx`insert into approvals (tenant_id, task_id, scope, action_hash, action, requested_by_type, expires_at, created_at)
             values (${tenantId}, ${waiting}, 'step', 'h', ${tx.json({ tool: 'noop', args: {} })}, 'system',
                     ${new Date(Date.now() + DAY)}, ${new Date(Date.now() - 30 * 3_600_000)})`;
    await tx`insert into llm_usage (tenant_id, provider, model, input_tokens, output_tokens)
             values (${tenantId}, 'anthropic', 'claude-test', 1000, 200), (${tenantId}, 'anthropic', 'claude-test', 500, 100)`;
  });
}

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'brief-a');
  b = await createTenantFixture(t, 'brief-b');
  await seed(a.tenant.id);
});
afterAll(() => t?.close());

describe('the weekly briefing', () => {
  it('counts the seeded work of the last 7 days and writes it to the vault', async () => {
    const r = expectStatus(await api('POST', '/briefings', {}), 201).json();
    expect(r.tasks).toEqual({
      created: 8,
      done: 3,
      failed: 2,
      rejected: 1,
      cancelled: 0,
      waiting: { needsAction: 1, pendingApproval: 1, total: 2 },
    });
    expect(r.timeSaved).toMatchObject({ minutesPerTask: 5, tasks: 3, minutes: 15 });
    expect(r.spend).toMatchObject({
      recorded: true,
      calls: 2,
      inputTokens: 1500,
      outputTokens: 300,
      cost: null,
    });
    expect(r.bottlenecks.failureCodes).toEqual([
      { code: 'HTTP_500', count: 2 },
      { code: 'TIMEOUT', count: 1 },
    ]);
    expect(r.bottlenecks.oldestApprovals).toHaveLength(1);
    expect(r.bottlenecks.oldestApprovals[0].waitingHours).toBeGreaterThanOrEqual(30);
    expect(r.suggestions.join('\n')).toMatch(/1 event\(s\) from email \(acme\.test\) matched no playbook/);
    expect(r.suggestions.join('\n')).toContain('waited more than a day');
    expect(r.email.status).toBe('not_requested');
    expect(r.week).toBe(isoWeek(new Date(), 'UTC'));
    expect(r.path).toBe(`Briefings/${r.week}.md`);

    const file = path.join(t.config.dataDir, 'tenants/brief-a/vault', r.path);
    const note = parseFrontMatter(await readFile(file, 'utf8'))!;
    expect(note.data).toMatchObject({
      type: 'briefing',
      week: r.week,
      done: 3,
      failed: 2,
      waiting: 2,
      time_saved_minutes: 15,
    });
    expect(note.body).toContain('HTTP_500: 2');

    const audit = expectStatus(await api('GET', '/audit?limit=20'), 200).json();
    expect(audit.items.map((e: { action: string }) => e.action)).toContain('briefing.created');
  });

  it('uses the tenant settings for minutes per task, prices and time zone', async () => {
    expectStatus(
      await api('PATCH', '/tenant', {
        settings: {
          timezone: 'Pacific/Kiritimati',
          briefing: { minutesPerTask: 12, pricePerMillionTokens: { input: 3, output: 15 } },
        },
      }),
      200,
    );
    const r = expectStatus(await api('POST', '/briefings'), 201).json();
    expect(r.timeSaved).toMatchObject({ minutesPerTask: 12, minutes: 36, hours: 0.6 });
    expect(r.spend.cost).toBe(0.01); // (1500 * 3 + 300 * 15) / 1e6 = 0.009
    expect(r.timezone).toBe('Pacific/Kiritimati');
    expect(r.week).toBe(isoWeek(new Date(), 'Pacific/Kiritimati'));
  });

  it('sees only its own tenant', async () => {
    const r = expectStatus(await api('POST', '/briefings', { email: false }, b.token), 201).json();
    expect(r.tasks).toMatchObject({ created: 0, done: 0, failed: 0, waiting: { total: 0 } });
    expect(r.spend).toMatchObject({ calls: 0, inputTokens: 0 });
    expect(r.suggestions.join('\n')).toContain('No new work arrived');
  });

  it('e-mails the owners only when an email.send tool exists, and once a week', async () => {
    const r = expectStatus(await api('POST', '/briefings', { email: true }, b.token), 201).json();
    if (t.res.tools.forTenant({}).has('email.send')) {
      expect(r.email).toMatchObject({ status: 'queued', recipients: [b.ownerEmail] });
      const task = expectStatus(await api('GET', `/tasks/${r.email.taskId}`, undefined, b.token), 200).json();
      expect(task.steps.map((s: { tool: string }) => s.tool)).toEqual(['email.send']);
      const again = expectStatus(await api('POST', '/briefings', { email: true }, b.token), 201).json();
      expect(again.email).toMatchObject({ status: 'already_queued', taskId: r.email.taskId });
    } else {
      expect(r.email.status).toBe('not_configured');
      expect(r.email.reason).toContain('not configured');
    }
  });

  it('rejects bad input and needs tenant:manage', async () => {
    expectStatus(await api('POST', '/briefings', { email: 'yes please' }), 400);
    expectStatus(await api('POST', '/briefings', { other: 1 }), 400);
    const viewerKey = expectStatus(
      await api('POST', '/api-keys', { name: 'viewer', role: 'viewer' }),
      201,
    ).json().key;
    expectStatus(await api('POST', '/briefings', {}, viewerKey), 403);
  });

  it('is scheduled weekly per tenant and reschedules itself', async () => {
    await ensureWeeklyBriefing(t.res, b.tenant.id);
    await ensureWeeklyBriefing(t.res, b.tenant.id); // idempotent: one job per tenant
    const jobs = await t.db.owner<{ run_at: Date; task_identifier: string }[]>`
      select j.run_at, tk.identifier as task_identifier from graphile_worker._private_jobs j
        join graphile_worker._private_tasks tk on tk.id = j.task_id
      where j.key = ${`briefing:${b.tenant.id}`}`;
    expect(jobs).toHaveLength(1);
    expect(jobs[0]!.task_identifier).toBe('weekly-briefing');
    expect(jobs[0]!.run_at.toISOString()).toBe(nextBriefingAt(new Date(), 'UTC').toISOString());
    expect(jobs[0]!.run_at.getUTCDay()).toBe(1);
    expect(jobs[0]!.run_at.getUTCHours()).toBe(7);

    await runWeeklyBriefing(t.res, b.tenant.id);
    const week = isoWeek(new Date(), 'UTC');
    expect(existsSync(path.join(t.config.dataDir, 'tenants/brief-b/vault/Briefings', `${week}.md`))).toBe(
      true,
    );
    const after = await t.db.owner<{ run_at: Date }[]>`
      select run_at from graphile_worker._private_jobs where key = ${`briefing:${b.tenant.id}`}`;
    expect(after).toHaveLength(1);
    expect(after[0]!.run_at.getTime()).toBeGreaterThan(Date.now());
  });
});

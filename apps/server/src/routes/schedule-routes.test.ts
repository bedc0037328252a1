import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDueSchedules } from '@steward/core/watchers/schedule-service';
import { startScheduler } from '@steward/core/watchers/scheduler';
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

const api = (method: 'GET' | 'POST' | 'PATCH' | 'DELETE', url: string, payload?: unknown, token = a.token) =>
  t.app.inject({
    method,
    url: `/api/v1${url}`,
    headers: bearer(token),
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

const scheduleEvents = (scheduleId: string) =>
  t.db.owner<
    { external_id: string; task_id: string; type: string; subject: string; data: Record<string, unknown> }[]
  >`
    select external_id, task_id, type, subject, data from events
    where source = 'schedule' and external_id like ${scheduleId + ':%'} order by external_id`;

/** Make a schedule due now, at a given slot (as if its time had come). */
const makeDue = (id: string, slot: Date) =>
  t.db.owner`update schedules set next_run_at = ${slot} where id = ${id}`;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'sched-a');
  b = await createTenantFixture(t, 'sched-b');
});
afterAll(() => t?.close());

describe('schedule management', () => {
  it('creates a schedule with its next run in its time zone, lists, changes and deletes it', async () => {
    const created = expectStatus(
      await api('POST', '/schedules', {
        name: 'Morning review',
        cron: '0 9 * * 1-5',
        timezone: 'Europe/Berlin',
        event: { type: 'review', subject: 'Morning review', data: { checklist: 'daily' } },
      }),
      201,
    ).json();
    expect(created).toMatchObject({
      name: 'Morning review',
      enabled: true,
      timezone: 'Europe/Berlin',
      lastRunAt: null,
    });
    const next = new Date(created.nextRunAt);
    expect(next.getTime()).toBeGreaterThan(Date.now());
    // 09:00 in Berlin is 07:00 or 08:00 UTC.
    expect([7, 8]).toContain(next.getUTCHours());
    expect(next.getUTCMinutes()).toBe(0);

    const list = expectStatus(await api('GET', '/schedules', undefined, a.apiKey), 200).json();
    expect(list.items.map((s: { id: string }) => s.id)).toContain(created.id);

    const disabled = expectStatus(
      await api('PATCH', `/schedules/${created.id}`, { enabled: false }),
      200,
    ).json();
    expect(disabled).toMatchObject({ enabled: false, nextRunAt: null });
    const moved = expectStatus(
      await api('PATCH', `/schedules/${created.id}`, { enabled: true, cron: '30 6 * * *', timezone: 'UTC' }),
      200,
    ).json();
    expect(new Date(moved.nextRunAt).getUTCHours()).toBe(6);
    expect(new Date(moved.nextRunAt).getUTCMinutes()).toBe(30);

    expectStatus(await api('DELETE', `/schedules/${created.id}`), 204);
    expectStatus(await api('DELETE', `/schedules/${created.id}`), 404);
  });

  it('refuses bad cron expressions and time zones with 400, and a duplicate name with 409', async () => {
    const base = { name: 'bad', event: { type: 'x' } };
    for (const [cron, timezone] of [
      ['61 * * * *', 'UTC'],
      ['* * * * * *', 'UTC'],
      ['@secondly', 'UTC'],
      ['0 9 * * *', 'Nowhere/City'],
    ]) {
      const r = expectStatus(await api('POST', '/schedules', { ...base, cron, timezone }), 400);
      expect(r.json().error.code).toBe('VALIDATION_FAILED');
    }
    expectStatus(await api('POST', '/schedules', { ...base, cron: '0 9 * * *', event: { type: '' } }), 400);
    expectStatus(await api('POST', '/schedules', { name: 'dup', cron: '@daily', event: { type: 'x' } }), 201);
    expectStatus(
      await api('POST', '/schedules', { name: 'dup', cron: '@hourly', event: { type: 'x' } }),
      409,
    );
    expectStatus(
      await api('POST', '/schedules', { name: 'dup', cron: '@hourly', event: { type: 'x' } }, b.token),
      201,
    );
  });
});

describe('the scheduler', () => {
  it('fires each slot once, even with two schedulers running the same pass, then moves to the next slot', async () => {
    const s = expectStatus(
      await api('POST', '/schedules', {
        name: 'Every 5 minutes',
        cron: '*/5 * * * *',
        event: { type: 'check', subject: 'Check the queue', body: 'look', from: 'ops', data: { k: 1 } },
      }),
      201,
    ).json();
    const slot = new Date(Date.now() - 60_000);
    slot.setUTCSeconds(0, 0);
    await makeDue(s.id, slot);

    const [one, two] = await Promise.all([runDueSchedules(t.res), runDueSchedules(t.res)]);
    const mine = [...one!, ...two!];
    const events = await scheduleEvents(s.id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      external_id: `${s.id}:${slot.toISOString()}`,
      type: 'check',
      subject: 'Check the queue',
      data: { k: 1, schedule: { id: s.id, name: 'Every 5 minutes', scheduledFor: slot.toISOString() } },
    });
    // Whoever fired, every intake names the same task.
    expect([...new Set(mine.map((i) => i.taskId))]).toEqual([events[0]!.task_id]);
    expect(mine.filter((i) => !i.duplicate)).toHaveLength(1);

    const after = expectStatus(await api('GET', '/schedules'), 200)
      .json()
      .items.find((x: { id: string }) => x.id === s.id);
    expect(after.lastRunAt).toBe(slot.toISOString());
    const nextRun = new Date(after.nextRunAt);
    expect(nextRun.getTime()).toBeGreaterThan(Date.now());
    expect(nextRun.getUTCMinutes() % 5).toBe(0);

    // Not due any more: another pass fires nothing.
    await runDueSchedules(t.res);
    expect(await scheduleEvents(s.id)).toHaveLength(1);

    // The same slot submitted again (a scheduler that read the row before the update) is a duplicate.
    await makeDue(s.id, slot);
    const again = await runDueSchedules(t.res);
    expect(again.filter((i) => i.taskId === events[0]!.task_id).every((i) => i.duplicate)).toBe(true);
    expect(await scheduleEvents(s.id)).toHaveLength(1);

    // A later slot is a new run.
    const later = new Date(slot.getTime() - 5 * 60_000);
    await makeDue(s.id, later);
    await runDueSchedules(t.res);
    expect(await scheduleEvents(s.id)).toHaveLength(2);
  });

  it('skips disabled schedules and suspended tenants, and the loop fires due schedules by itself', async () => {
    const off = expectStatus(
      await api('POST', '/schedules', { name: 'off', cron: '@hourly', enabled: false, event: { type: 'x' } }),
      201,
    ).json();
    await makeDue(off.id, new Date(Date.now() - 1000));
    const inB = expectStatus(
      await api('POST', '/schedules', { name: 'in b', cron: '@hourly', event: { type: 'x' } }, b.token),
      201,
    ).json();
    await makeDue(inB.id, new Date(Date.now() - 1000));
    await t.db.owner`update tenants set status = 'suspended' where id = ${b.tenant.id}`;
    await runDueSchedules(t.res);
    expect(await scheduleEvents(off.id)).toHaveLength(0);
    expect(await scheduleEvents(inB.id)).toHaveLength(0);
    await t.db.owner`update tenants set status = 'active' where id = ${b.tenant.id}`;

    const loop = startScheduler(t.res, { intervalMs: 100 });
    try {
      const deadline = Date.now() + 10_000;
      while ((await scheduleEvents(inB.id)).length === 0) {
        if (Date.now() > deadline) throw new Error('the scheduler loop did not fire');
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await loop.stop();
    }
    const [e] = await t.db.owner<{ tenant_id: string }[]>`
      select tenant_id from events where external_id like ${inB.id + ':%'}`;
    expect(e!.tenant_id).toBe(b.tenant.id);
    expect(await scheduleEvents(off.id)).toHaveLength(0);
  });
});

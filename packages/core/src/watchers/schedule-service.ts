import { conflict, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { submitEvent, type Intake } from '../tasks/task-service.ts';
import { assertSchedule, nextRunAfter } from './cron.ts';

/** The event a schedule submits on every run (its source is always `schedule`). */
export interface ScheduleEvent {
  type: string;
  subject?: string | undefined;
  body?: string | undefined;
  from?: string | undefined;
  data?: Record<string, unknown> | undefined;
}

export interface ScheduleView {
  id: string;
  name: string;
  cron: string;
  timezone: string;
  event: ScheduleEvent;
  enabled: boolean;
  nextRunAt: string | null;
  lastRunAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface ScheduleInput {
  name: string;
  cron: string;
  timezone?: string | undefined;
  event: ScheduleEvent;
  enabled?: boolean | undefined;
}

interface Row {
  tenant_id: string;
  id: string;
  name: string;
  cron: string;
  timezone: string;
  event: ScheduleEvent;
  enabled: boolean;
  next_run_at: Date | null;
  last_run_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

const toView = (r: Row): ScheduleView => ({
  id: r.id,
  name: r.name,
  cron: r.cron,
  timezone: r.timezone,
  event: r.event,
  enabled: r.enabled,
  nextRunAt: r.next_run_at?.toISOString() ?? null,
  lastRunAt: r.last_run_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

const uniqueName = (name: string) => (e: unknown) => {
  if ((e as { code?: string }).code === '23505') throw conflict(`a schedule named "${name}" already exists`);
  throw e;
};

export async function listSchedules(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<ScheduleView>> {
  const after = decodeCursor(q.cursor, ['name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select * from schedules where tenant_id = ${tenantId}
        ${after ? tx`and name > ${after.name}` : tx``}
      order by name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > q.limit && last ? encodeCursor({ name: last.name }) : null };
  });
}

export async function getSchedule(res: Resources, tenantId: string, id: string): Promise<ScheduleView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<Row[]>`select * from schedules where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('schedule');
  return toView(row);
}

export async function createSchedule(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: ScheduleInput,
  now = new Date(),
): Promise<ScheduleView> {
  const timezone = input.timezone ?? 'UTC';
  assertSchedule(input.cron, timezone);
  const enabled = input.enabled ?? true;
  const next = enabled ? nextRunAfter(input.cron, timezone, now) : null;
  return res.db
    .withTenant(tenantId, async (tx) => {
      const [row] = await tx<Row[]>`
        insert into schedules (tenant_id, name, cron, timezone, event, enabled, next_run_at)
        values (${tenantId}, ${input.name}, ${input.cron.trim()}, ${timezone}, ${tx.json(input.event as never)},
                ${enabled}, ${next})
        returning *`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'schedule.created',
        targetType: 'schedule',
        targetId: row!.id,
        details: { name: input.name, cron: row!.cron, timezone, type: input.event.type },
      });
      return toView(row!);
    })
    .catch(uniqueName(input.name));
}

export async function updateSchedule(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  input: Partial<ScheduleInput>,
  now = new Date(),
): Promise<ScheduleView> {
  const current = await getSchedule(res, tenantId, id);
  const next = {
    name: input.name ?? current.name,
    cron: input.cron?.trim() ?? current.cron,
    timezone: input.timezone ?? current.timezone,
    event: input.event ?? current.event,
    enabled: input.enabled ?? current.enabled,
  };
  assertSchedule(next.cron, next.timezone);
  const timing = input.cron !== undefined || input.timezone !== undefined || input.enabled !== undefined;
  return res.db
    .withTenant(tenantId, async (tx) => {
      // A changed timing starts afresh from now; an unchanged one keeps its pending run.
      const [row] = await tx<Row[]>`
        update schedules set name = ${next.name}, cron = ${next.cron}, timezone = ${next.timezone},
          event = ${tx.json(next.event as never)}, enabled = ${next.enabled},
          ${
            timing
              ? tx`next_run_at = ${next.enabled ? nextRunAfter(next.cron, next.timezone, now) : null},`
              : tx``
          }
          updated_at = now()
        where tenant_id = ${tenantId} and id = ${id} returning *`;
      if (!row) throw notFound('schedule');
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'schedule.updated',
        targetType: 'schedule',
        targetId: id,
        details: {
          fields: Object.keys(input),
          cron: next.cron,
          timezone: next.timezone,
          enabled: next.enabled,
        },
      });
      return toView(row);
    })
    .catch(uniqueName(next.name));
}

export async function deleteSchedule(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<
      { name: string }[]
    >`delete from schedules where tenant_id = ${tenantId} and id = ${id} returning name`;
    if (!row) throw notFound('schedule');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'schedule.deleted',
      targetType: 'schedule',
      targetId: id,
      details: { name: row.name },
    });
  });
}

/** The dedupe key of one run: two schedulers firing the same slot make one event and one task. */
export const runExternalId = (scheduleId: string, slot: Date) => `${scheduleId}:${slot.toISOString()}`;

/**
 * Fire one due run of a schedule: submit its event for the slot `slot`, then move next_run_at on
 * (only if nobody else did). Runs missed while no scheduler was running are folded into one run:
 * the next slot is computed from max(slot, now).
 */
export async function fireSchedule(
  res: Resources,
  tenantId: string,
  id: string,
  slot: Date,
  now = new Date(),
): Promise<Intake | undefined> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<Row[]>`
      select * from schedules
      where tenant_id = ${tenantId} and id = ${id} and enabled and next_run_at = ${slot}`,
  );
  if (!row) return undefined; // fired, changed or deleted meanwhile
  const e = row.event;
  const intake = await submitEvent(
    res,
    tenantId,
    { type: 'system', id: row.id, label: `schedule ${row.name}` },
    {
      source: 'schedule',
      type: e.type,
      externalId: runExternalId(row.id, slot),
      from: e.from ?? `schedule:${row.name}`,
      subject: e.subject ?? row.name,
      body: e.body,
      data: {
        ...(e.data ?? {}),
        schedule: { id: row.id, name: row.name, scheduledFor: slot.toISOString() },
      },
    },
  );
  let next: Date | null;
  try {
    next = nextRunAfter(row.cron, row.timezone, new Date(Math.max(slot.getTime(), now.getTime())));
  } catch {
    next = null; // the expression can no longer fire (checked at save time; kept safe here)
  }
  await res.db.withTenant(
    tenantId,
    (tx) => tx`
      update schedules set next_run_at = ${next}, last_run_at = ${slot}
      where tenant_id = ${tenantId} and id = ${id} and next_run_at = ${slot}`,
  );
  return intake;
}

export interface DueRun {
  tenantId: string;
  id: string;
  slot: Date;
}

/** Schedules due at `now`, across tenants (system access reads ids and times only). */
export async function dueSchedules(res: Resources, now: Date, limit = 100): Promise<DueRun[]> {
  const rows = await res.db.withSystemAccess(
    (tx) => tx<{ tenant_id: string; id: string; next_run_at: Date }[]>`
      select s.tenant_id, s.id, s.next_run_at from schedules s join tenants t on t.id = s.tenant_id
      where s.enabled and s.next_run_at <= ${now} and t.status = 'active'
      order by s.next_run_at limit ${limit}`,
  );
  return rows.map((r) => ({ tenantId: r.tenant_id, id: r.id, slot: r.next_run_at }));
}

/** One scheduler pass: fire every due schedule. Returns the intakes (new and duplicate). */
export async function runDueSchedules(
  res: Resources,
  now = new Date(),
  onError?: (run: DueRun, error: unknown) => void,
): Promise<Intake[]> {
  const out: Intake[] = [];
  for (const run of await dueSchedules(res, now)) {
    try {
      const intake = await fireSchedule(res, run.tenantId, run.id, run.slot, now);
      if (intake) out.push(intake);
    } catch (error) {
      onError?.(run, error);
    }
  }
  return out;
}

import { randomUUID } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { enqueue, PLAN_BATCH } from '../executor/job-queue.ts';
import { conflict, notFound, unauthenticated } from '../errors/app-error.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import {
  FINAL_TASK_STATUSES,
  type ApprovalRow,
  type StepRow,
  type TaskRow,
  type TaskStatus,
} from './task-types.ts';

export interface EventInput {
  source: string;
  type: string;
  externalId?: string | undefined;
  from?: string | undefined;
  subject?: string | undefined;
  body?: string | undefined;
  data?: Record<string, unknown> | undefined;
}

export interface Intake {
  eventId: string;
  taskId: string;
  /** True when (source, externalId) was seen before: nothing new was created. */
  duplicate: boolean;
}

/**
 * A signed webhook delivery's signature. It is recorded in the intake's own transaction, so a
 * signature is used exactly when its event was taken: a delivery the database failed to take (a 503)
 * can be sent again with the same signature, and one that was taken cannot (401, replay).
 */
export interface SignatureClaim {
  webhookId: string;
  signature: string;
}

/**
 * How long a used signature is remembered: twice the webhook timestamp window (5 minutes), after
 * which the signature is refused as expired anyway.
 */
const SIGNATURES_KEPT_SECONDS = 600;

const replayed = () => unauthenticated('this signature was already used (replay)');

function titleOf(e: EventInput): string {
  const t = (e.subject?.trim() || `${e.type} from ${e.from?.trim() || e.source}`).replace(/\s+/g, ' ');
  return t.length > 300 ? t.slice(0, 297) + '...' : t;
}

/**
 * Turn an event into a task in `needs_action` and queue its planning, in one transaction.
 * The same (source, externalId) twice gives the same task.
 *
 * Group commit: events for the same tenant that arrive while an intake transaction of that tenant
 * is in flight are submitted together in the next one (up to INTAKE_BATCH), so a burst costs one
 * commit and one audit chain step per batch instead of per event. Every event still gets its own
 * task and audit entry, the batch one planning job, and each promise resolves only after the commit. If a batch
 * fails, each of its events is tried again on its own, so one bad event fails only itself.
 */
export async function submitEvent(
  res: Resources,
  tenantId: string,
  actor: Actor,
  e: EventInput,
  signature?: SignatureClaim,
): Promise<Intake> {
  let queues = intakeQueues.get(res);
  if (!queues) intakeQueues.set(res, (queues = new Map()));
  let queue = queues.get(tenantId);
  if (!queue) queues.set(tenantId, (queue = { waiting: [], running: false }));
  const q = queue;
  return new Promise<Intake>((resolve, reject) => {
    q.waiting.push({ actor, e, signature, resolve, reject });
    if (!q.running) void drainIntake(res, tenantId, q, queues);
  });
}

const INTAKE_BATCH = PLAN_BATCH;

interface PendingIntake {
  actor: Actor;
  e: EventInput;
  signature: SignatureClaim | undefined;
  resolve: (i: Intake) => void;
  reject: (error: unknown) => void;
}

interface IntakeQueue {
  waiting: PendingIntake[];
  running: boolean;
}

const intakeQueues = new WeakMap<Resources, Map<string, IntakeQueue>>();

async function drainIntake(
  res: Resources,
  tenantId: string,
  q: IntakeQueue,
  queues: Map<string, IntakeQueue>,
): Promise<void> {
  q.running = true;
  try {
    while (q.waiting.length) {
      const batch = q.waiting.splice(0, INTAKE_BATCH);
      let results: (Intake | Error)[] | undefined;
      try {
        results = await res.db.withTenant(tenantId, (tx) => intakeBatch(res, tx, tenantId, batch));
      } catch (error) {
        if (batch.length === 1) batch[0]!.reject(error);
      }
      if (results) batch.forEach((b, i) => settle(b, results[i]!));
      else if (batch.length > 1) {
        // One of them failed the batch: each on its own, so only the bad one fails.
        await Promise.all(
          batch.map((b) =>
            res.db
              .withTenant(tenantId, (tx) => intakeBatch(res, tx, tenantId, [b]))
              .then((r) => settle(b, r[0]!), b.reject),
          ),
        );
      }
    }
  } finally {
    q.running = false;
    if (!q.waiting.length && queues.get(tenantId) === q) queues.delete(tenantId);
  }
}

const settle = (b: PendingIntake, result: Intake | Error) =>
  result instanceof Error ? b.reject(result) : b.resolve(result);

const claimKey = (webhookId: string, signature: string) => `${webhookId}\u0000${signature}`;

/**
 * A batch of events' intake inside the caller's transaction, in one statement: the events, their
 * tasks, the signatures of signed deliveries, and one `plan-tasks` job that plans them together
 * (one wake-up notification per batch). An event whose (source, externalId) exists already, or
 * appears earlier in the same batch, creates nothing and answers the existing event and task. An
 * event whose signature was used already creates nothing and fails (replay). One audit entry per
 * new task.
 */
async function intakeBatch(
  res: Resources,
  tx: Tx,
  tenantId: string,
  batch: readonly Pick<PendingIntake, 'actor' | 'e' | 'signature'>[],
): Promise<(Intake | Error)[]> {
  // A signature twice in one batch: the second is a replay of the first.
  const signed = new Set<string>();
  const repeated = new Set<number>();
  batch.forEach(({ signature: s }, ord) => {
    if (!s) return;
    const key = claimKey(s.webhookId, s.signature);
    if (signed.has(key)) repeated.add(ord);
    signed.add(key);
  });
  const rows = batch.map(({ actor, e, signature }, ord) => ({
    ord,
    event_id: randomUUID(),
    task_id: randomUUID(),
    source: e.source,
    type: e.type,
    external_id: e.externalId ?? null,
    sender: e.from ?? null,
    subject: e.subject ?? null,
    body: e.body ?? null,
    data: e.data ?? {},
    title: titleOf(e),
    actor_type: actor.type,
    actor_id: actor.id ?? null,
    webhook_id: signature?.webhookId ?? null,
    signature: signature?.signature ?? null,
  }));
  // The planning job is a plain insert into graphile-worker's queue table and its jobs:insert
  // wake-up: what add_jobs does for a job without key or queue, without its upserts and key update
  // (which PostgreSQL would plan again on every call). While the queue does not know the task name
  // yet (a fresh database), nothing is inserted and enqueue() adds the job below.
  // A batch without signed deliveries leaves out the signature claims (a separate prepared
  // statement: 0.24 instead of 0.40 ms of planning per batch, and each run is planned).
  const claiming = signed.size > 0;
  const insert = tx<{ ids: string[]; claimed: { w: string; s: string }[]; queued: number }[]>`
    with input as (
      select * from jsonb_to_recordset(${tx.json(rows.filter((r) => !repeated.has(r.ord)) as never)}) as x(
        ord int, event_id uuid, task_id uuid, source text, type text, external_id text, sender text,
        subject text, body text, data jsonb, title text, actor_type text, actor_id text,
        webhook_id uuid, signature text)),
    ${
      claiming
        ? tx`forgotten as (
      delete from webhook_deliveries
      where tenant_id = ${tenantId}
        and webhook_id in (select webhook_id from input where signature is not null)
        and received_at < now() - make_interval(secs => ${SIGNATURES_KEPT_SECONDS})),
    claimed as (
      insert into webhook_deliveries (tenant_id, webhook_id, signature)
      select ${tenantId}, webhook_id, signature from input where signature is not null
      on conflict do nothing
      returning webhook_id, signature),`
        : tx``
    }
    ev as (
      insert into events (tenant_id, id, source, type, external_id, sender, subject, body, data, task_id)
      select ${tenantId}, event_id, source, type, external_id, sender, subject, body, data, task_id
        from input i
        ${
          claiming
            ? tx`where i.signature is null
           or exists (select 1 from claimed c where c.webhook_id = i.webhook_id and c.signature = i.signature)`
            : tx``
        }
        order by ord
      on conflict (tenant_id, source, external_id) where external_id is not null do nothing
      returning id),
    t as (
      insert into tasks (tenant_id, id, title, source, event_id, created_by_type, created_by_id)
      select ${tenantId}, i.task_id, i.title, i.source, i.event_id, i.actor_type, i.actor_id
        from input i join ev on ev.id = i.event_id
      returning id),
    job as (
      insert into graphile_worker._private_jobs (task_id, payload, max_attempts)
      select k.id, json_build_object('tenantId', ${tenantId}::text, 'taskIds', (select json_agg(id) from t)), 10
        from graphile_worker._private_tasks k
        where k.identifier = 'plan-tasks' and exists (select 1 from t)
      returning id),
    woken as (select pg_notify('jobs:insert', '{"count":1}') from job)
    select coalesce((select json_agg(id) from t), '[]') as ids,
           ${
             claiming
               ? tx`coalesce((select json_agg(json_build_object('w', webhook_id, 's', signature)) from claimed), '[]')`
               : tx`'[]'::json`
           } as claimed,
           (select count(*) from woken)::int as queued`.execute();
  // The audit entries of the new tasks are written next: their chain head is read in this round trip.
  res.audit.lockHead(tx, tenantId);
  const [created] = await insert;
  const ids = created!.ids;
  if (ids.length && !created!.queued)
    await enqueue(tx, 'plan-tasks', { tenantId, taskIds: ids }, { maxAttempts: 10 });
  const claimed = new Set(created!.claimed.map((c) => claimKey(c.w, c.s)));
  const replay = (r: (typeof rows)[number]) =>
    r.signature !== null && (repeated.has(r.ord) || !claimed.has(claimKey(r.webhook_id!, r.signature)));
  const isNew = new Set(ids);
  const out: (Intake | Error | undefined)[] = rows.map((r) =>
    isNew.has(r.task_id)
      ? { eventId: r.event_id, taskId: r.task_id, duplicate: false }
      : replay(r)
        ? replayed()
        : undefined,
  );
  const duplicates = rows.filter((r) => out[r.ord] === undefined);
  if (duplicates.length) {
    // Only an event with an externalId can be a duplicate; the first of its key has committed or is ours.
    const existing = await tx<{ id: string; task_id: string; source: string; external_id: string }[]>`
      select id, task_id, source, external_id from events
      where tenant_id = ${tenantId}
        and (source, external_id) in (
          select * from unnest(${duplicates.map((d) => d.source)}::text[], ${duplicates.map((d) => d.external_id!)}::text[]))`;
    const byKey = new Map(existing.map((x) => [`${x.source}\u0000${x.external_id}`, x]));
    for (const d of duplicates) {
      const x = byKey.get(`${d.source}\u0000${d.external_id}`)!;
      out[d.ord] = { eventId: x.id, taskId: x.task_id, duplicate: true };
    }
  }
  for (const r of rows) {
    if (!isNew.has(r.task_id)) continue;
    await res.audit.record(tx, tenantId, {
      ...auditActor(batch[r.ord]!.actor),
      action: 'task.created',
      targetType: 'task',
      targetId: r.task_id,
      details: { eventId: r.event_id, source: r.source, type: r.type, externalId: r.external_id },
    });
  }
  return out as (Intake | Error)[];
}

export interface TaskSummary {
  id: string;
  title: string;
  status: TaskStatus;
  source: string;
  planner: string | null;
  needsActionReason: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export const toTaskSummary = (t: TaskRow): TaskSummary => ({
  id: t.id,
  title: t.title,
  status: t.status,
  source: t.source,
  planner: t.planner,
  needsActionReason: t.needs_action_reason,
  createdAt: t.created_at.toISOString(),
  updatedAt: t.updated_at.toISOString(),
  finishedAt: t.finished_at?.toISOString() ?? null,
});

export async function listTasks(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined; status?: string | undefined },
): Promise<Page<TaskSummary>> {
  const before = decodeCursor(q.cursor, ['t', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<(TaskRow & { cursor_t: string })[]>`
      select *, created_at::text as cursor_t from tasks where tenant_id = ${tenantId}
        ${q.status ? tx`and status = ${q.status}` : tx``}
        ${before ? tx`and (created_at, id) < (${before.t}::text::timestamptz, ${before.id}::uuid)` : tx``}
      order by created_at desc, id desc limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toTaskSummary);
    const last = rows[q.limit - 1];
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ t: last.cursor_t, id: last.id }) : null,
    };
  });
}

export interface StepView {
  id: string;
  key: string;
  kind: string;
  tool: string;
  args: Record<string, unknown>;
  dependsOn: string[];
  risk: string;
  needsApproval: boolean;
  approvalReasons: string[];
  status: string;
  attempts: number;
  maxAttempts: number;
  result: Record<string, unknown> | null;
  error: Record<string, unknown> | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export const toStepView = (s: StepRow): StepView => ({
  id: s.id,
  key: s.key,
  kind: s.kind,
  tool: s.tool,
  args: s.args,
  dependsOn: s.depends_on,
  risk: s.risk,
  needsApproval: s.needs_approval,
  approvalReasons: s.approval_reasons,
  status: s.status,
  attempts: s.attempts,
  maxAttempts: s.max_attempts,
  result: s.result,
  error: s.error,
  startedAt: s.started_at?.toISOString() ?? null,
  finishedAt: s.finished_at?.toISOString() ?? null,
});

export interface ApprovalView {
  id: string;
  taskId: string;
  stepId: string | null;
  scope: string;
  status: string;
  action: Record<string, unknown>;
  actionHash: string;
  preview: unknown[];
  reasons: string[];
  quorum: number;
  approvals: number;
  decisions: { actorLabel: string | null; decision: string; comment: string | null; at: string }[];
  expiresAt: string;
  decidedAt: string | null;
  createdAt: string;
}

export async function approvalViews(
  tx: import('@steward/db/database').Tx,
  tenantId: string,
  rows: ApprovalRow[],
): Promise<ApprovalView[]> {
  if (!rows.length) return [];
  const decisions = await tx<
    {
      approval_id: string;
      actor_label: string | null;
      decision: string;
      comment: string | null;
      created_at: Date;
    }[]
  >`
    select approval_id, actor_label, decision, comment, created_at from approval_decisions
    where tenant_id = ${tenantId} and approval_id = any(${rows.map((r) => r.id)}::uuid[]) order by created_at`;
  return rows.map((r) => {
    const mine = decisions.filter((d) => d.approval_id === r.id);
    return {
      id: r.id,
      taskId: r.task_id,
      stepId: r.step_id,
      scope: r.scope,
      status: r.status,
      action: r.action,
      actionHash: r.action_hash,
      preview: r.preview,
      reasons: r.reasons,
      quorum: r.quorum,
      approvals: mine.filter((d) => d.decision === 'approve').length,
      decisions: mine.map((d) => ({
        actorLabel: d.actor_label,
        decision: d.decision,
        comment: d.comment,
        at: d.created_at.toISOString(),
      })),
      expiresAt: r.expires_at.toISOString(),
      decidedAt: r.decided_at?.toISOString() ?? null,
      createdAt: r.created_at.toISOString(),
    };
  });
}

export interface TaskDetail extends TaskSummary {
  planSummary: string | null;
  error: Record<string, unknown> | null;
  event: {
    id: string;
    source: string;
    type: string;
    externalId: string | null;
    from: string | null;
    subject: string | null;
    body: string | null;
    data: Record<string, unknown>;
    receivedAt: string;
  } | null;
  steps: StepView[];
  approvals: ApprovalView[];
}

export async function getTask(res: Resources, tenantId: string, taskId: string): Promise<TaskDetail> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [task] = await tx<TaskRow[]>`select * from tasks where tenant_id = ${tenantId} and id = ${taskId}`;
    if (!task) throw notFound('task');
    const [event] = await tx<
      {
        id: string;
        source: string;
        type: string;
        external_id: string | null;
        sender: string | null;
        subject: string | null;
        body: string | null;
        data: Record<string, unknown>;
        received_at: Date;
      }[]
    >`
      select * from events where tenant_id = ${tenantId} and task_id = ${taskId}`;
    const steps = await tx<
      StepRow[]
    >`select * from steps where tenant_id = ${tenantId} and task_id = ${taskId} order by position`;
    const approvals = await tx<ApprovalRow[]>`
      select * from approvals where tenant_id = ${tenantId} and task_id = ${taskId} order by created_at`;
    return {
      ...toTaskSummary(task),
      planSummary: task.plan_summary,
      error: task.error,
      event: event
        ? {
            id: event.id,
            source: event.source,
            type: event.type,
            externalId: event.external_id,
            from: event.sender,
            subject: event.subject,
            body: event.body,
            data: event.data,
            receivedAt: event.received_at.toISOString(),
          }
        : null,
      steps: steps.map(toStepView),
      approvals: await approvalViews(tx, tenantId, approvals),
    };
  });
}

/**
 * Cancel a task: nothing new starts, pending approvals are withdrawn, and running steps are told
 * to stop (their workers abort the call and record the outcome).
 */
export async function cancelTask(
  res: Resources,
  tenantId: string,
  actor: Actor,
  taskId: string,
): Promise<string[]> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [task] = await tx<
      TaskRow[]
    >`select * from tasks where tenant_id = ${tenantId} and id = ${taskId} for update`;
    if (!task) throw notFound('task');
    if (FINAL_TASK_STATUSES.has(task.status)) throw conflict(`the task is already ${task.status}`);
    await tx`update tasks set status = 'cancelled', cancel_requested = true, finished_at = now(), updated_at = now()
             where tenant_id = ${tenantId} and id = ${taskId}`;
    await tx`update steps set status = 'cancelled', updated_at = now()
             where tenant_id = ${tenantId} and task_id = ${taskId} and status in ('pending', 'awaiting_approval', 'ready')`;
    await tx`update approvals set status = 'cancelled' where tenant_id = ${tenantId} and task_id = ${taskId} and status = 'pending'`;
    const running = await tx<{ id: string }[]>`
      select id from steps where tenant_id = ${tenantId} and task_id = ${taskId} and status = 'running'`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'task.cancelled',
      targetType: 'task',
      targetId: taskId,
      details: { runningSteps: running.length },
    });
    await tx`select pg_notify('steward_cancel', ${JSON.stringify({ tenantId, stepIds: running.map((r) => r.id) })})`;
    return running.map((r) => r.id);
  });
}

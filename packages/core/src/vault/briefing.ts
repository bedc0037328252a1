import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { CronExpressionParser } from 'cron-parser';
import type { TSchema } from '@sinclair/typebox';
import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { validateDraft, type PlanDraft } from '../planner/plan-draft.ts';
import { storePlan } from '../planner/plan-task.ts';
import { auditActor, SYSTEM_ACTOR, type Actor, type Resources } from '../resources.ts';
import type { TaskRow } from '../tasks/task-types.ts';
import type { Tool } from '../tools/tool.ts';
import { ensureFolder, fileIn, inline, vaultDir, withFrontMatter, writeAtomic } from './vault-files.ts';
import { vaultUserOf } from './vault-sync.ts';

/**
 * Minutes a person would have spent on one task Steward finished, for the "time saved" estimate:
 * reading the request, doing the few clicks or the e-mail it took, filing it. A deliberately
 * conservative guess; tenants set their own with the setting `briefing.minutesPerTask`.
 */
export const DEFAULT_MINUTES_PER_TASK = 5;
export const BRIEFING_DAYS = 7;
/** Weekly, Monday 07:00 in the tenant's time zone (setting `timezone`, default UTC). */
export const BRIEFING_CRON = '0 7 * * 1';
export const BRIEFING_JOB = 'weekly-briefing';

export type EmailStatus = 'queued' | 'already_queued' | 'not_requested' | 'not_configured' | 'failed';

export interface Briefing {
  week: string;
  /** Path inside the tenant's vault. */
  path: string;
  generatedAt: string;
  timezone: string;
  period: { from: string; to: string };
  tasks: {
    created: number;
    done: number;
    failed: number;
    rejected: number;
    cancelled: number;
    waiting: { needsAction: number; pendingApproval: number; total: number };
  };
  timeSaved: { minutesPerTask: number; tasks: number; minutes: number; hours: number; note: string };
  spend: {
    recorded: boolean;
    calls: number;
    inputTokens: number;
    outputTokens: number;
    byModel: { provider: string; model: string; calls: number; inputTokens: number; outputTokens: number }[];
    cost: number | null;
    note: string;
  };
  bottlenecks: {
    oldestApprovals: {
      approvalId: string;
      taskId: string;
      title: string;
      tool: string;
      waitingHours: number;
    }[];
    failureCodes: { code: string; count: number }[];
  };
  suggestions: string[];
  email: { status: EmailStatus; recipients: string[]; taskId?: string; reason?: string };
}

/** The tenant's time zone (setting `timezone`) when it is a valid IANA name, else UTC. */
export function tenantTimeZone(settings: Record<string, unknown>): string {
  const tz = settings.timezone;
  if (typeof tz !== 'string' || !tz) return 'UTC';
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
    return tz;
  } catch {
    return 'UTC';
  }
}

/** ISO 8601 week (`2026-W47`) of an instant, as seen in a time zone. */
export function isoWeek(at: Date, timeZone: string): string {
  const parts = new Intl.DateTimeFormat('en-CA', {
    timeZone,
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
  })
    .formatToParts(at)
    .reduce<Record<string, string>>((acc, p) => ({ ...acc, [p.type]: p.value }), {});
  const date = new Date(Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day)));
  const day = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - day); // the Thursday of this week decides its year
  const year = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** The next Monday 07:00 in `timeZone` strictly after `after`. */
export function nextBriefingAt(after: Date, timeZone: string): Date {
  return CronExpressionParser.parse(BRIEFING_CRON, { currentDate: after, tz: timeZone }).next().toDate();
}

function minutesPerTask(settings: Record<string, unknown>): number {
  const nested = (settings.briefing as { minutesPerTask?: unknown } | undefined)?.minutesPerTask;
  const value = nested ?? settings['briefing.minutesPerTask'];
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= 1440
    ? value
    : DEFAULT_MINUTES_PER_TASK;
}

function tokenPrices(settings: Record<string, unknown>): { input: number; output: number } | null {
  const p = (
    settings.briefing as { pricePerMillionTokens?: { input?: unknown; output?: unknown } } | undefined
  )?.pricePerMillionTokens;
  if (!p || typeof p.input !== 'number' || typeof p.output !== 'number' || p.input < 0 || p.output < 0)
    return null;
  return { input: p.input, output: p.output };
}

const n = (v: unknown) => Number(v ?? 0);

/** Gather the figures of a briefing (one transaction, the tenant's own rows only). */
async function gather(tx: Tx, tenantId: string, now: Date): Promise<Omit<Briefing, 'path' | 'email'>> {
  const [tenant] = await tx<{ settings: Record<string, unknown> }[]>`
    select settings from tenants where id = ${tenantId}`;
  const settings = tenant?.settings ?? {};
  const timezone = tenantTimeZone(settings);
  const from = new Date(now.getTime() - BRIEFING_DAYS * 86_400_000);
  const [c] = await tx<Record<string, string>[]>`
    select
      count(*) filter (where created_at >= ${from} and created_at < ${now}) as created,
      count(*) filter (where status = 'done' and finished_at >= ${from} and finished_at < ${now}) as done,
      count(*) filter (where status = 'failed' and finished_at >= ${from} and finished_at < ${now}) as failed,
      count(*) filter (where status = 'rejected' and finished_at >= ${from} and finished_at < ${now}) as rejected,
      count(*) filter (where status = 'cancelled' and finished_at >= ${from} and finished_at < ${now}) as cancelled,
      count(*) filter (where status = 'needs_action') as needs_action,
      count(*) filter (where status = 'pending_approval') as pending_approval
    from tasks where tenant_id = ${tenantId}`;
  const done = n(c?.done);
  const perTask = minutesPerTask(settings);

  const usageTable = await tx<{ t: string | null }[]>`select to_regclass('llm_usage')::text as t`;
  let spend: Briefing['spend'];
  if (usageTable[0]?.t) {
    const rows = await tx<
      { provider: string; model: string; calls: string; input: string; output: string }[]
    >`
      select provider, model, count(*) as calls, coalesce(sum(input_tokens), 0) as input,
             coalesce(sum(output_tokens), 0) as output
      from llm_usage where tenant_id = ${tenantId} and created_at >= ${from} and created_at < ${now}
      group by provider, model order by sum(input_tokens) + sum(output_tokens) desc`;
    const byModel = rows.map((r) => ({
      provider: r.provider,
      model: r.model,
      calls: n(r.calls),
      inputTokens: n(r.input),
      outputTokens: n(r.output),
    }));
    const inputTokens = byModel.reduce((s, r) => s + r.inputTokens, 0);
    const outputTokens = byModel.reduce((s, r) => s + r.outputTokens, 0);
    const prices = tokenPrices(settings);
    spend = {
      recorded: true,
      calls: byModel.reduce((s, r) => s + r.calls, 0),
      inputTokens,
      outputTokens,
      byModel,
      cost: prices
        ? Math.round(((inputTokens * prices.input + outputTokens * prices.output) / 1_000_000) * 100) / 100
        : null,
      note: prices
        ? 'cost from the setting briefing.pricePerMillionTokens'
        : 'LLM tokens used by the planner; set briefing.pricePerMillionTokens ({input, output}) to see a cost',
    };
  } else {
    spend = {
      recorded: false,
      calls: 0,
      inputTokens: 0,
      outputTokens: 0,
      byModel: [],
      cost: 0,
      note: 'no LLM usage is recorded by this installation, so spend is shown as 0',
    };
  }

  const oldest = await tx<
    {
      id: string;
      task_id: string;
      title: string;
      scope: string;
      action: { tool?: unknown };
      created_at: Date;
    }[]
  >`
    select a.id, a.task_id, t.title, a.scope, a.action, a.created_at
    from approvals a join tasks t on t.tenant_id = a.tenant_id and t.id = a.task_id
    where a.tenant_id = ${tenantId} and a.status = 'pending' and a.expires_at > ${now}
    order by a.created_at limit 5`;
  const codes = await tx<{ code: string; count: string }[]>`
    select coalesce(error->>'code', 'UNKNOWN') as code, count(*) as count from steps
    where tenant_id = ${tenantId} and status in ('failed', 'dead') and error is not null
      and coalesce(finished_at, updated_at) >= ${from} and coalesce(finished_at, updated_at) < ${now}
    group by 1 order by 2 desc, 1 limit 5`;
  const unmatched = await tx<{ source: string; sender_domain: string | null; count: string }[]>`
    select e.source, lower(substring(e.sender from '@([^@>\\s]+)')) as sender_domain, count(*) as count
    from tasks t join events e on e.tenant_id = t.tenant_id and e.task_id = t.id
    where t.tenant_id = ${tenantId} and t.created_at >= ${from} and t.created_at < ${now}
      and t.needs_action_reason like 'no playbook matched%'
    group by 1, 2 order by 3 desc, 1 limit 5`;

  const oldestApprovals = oldest.map((a) => ({
    approvalId: a.id,
    taskId: a.task_id,
    title: a.title,
    tool: a.scope === 'plan' ? 'plan' : String(a.action.tool ?? 'unknown'),
    waitingHours: Math.round(((now.getTime() - a.created_at.getTime()) / 3_600_000) * 10) / 10,
  }));
  const failureCodes = codes.map((r) => ({ code: r.code, count: n(r.count) }));
  const suggestions: string[] = [];
  for (const u of unmatched) {
    suggestions.push(
      `${n(u.count)} event(s) from ${u.source}${u.sender_domain ? ` (${u.sender_domain})` : ''} matched no playbook: add a playbook for them so Steward can handle them itself.`,
    );
  }
  const stale = oldestApprovals.filter((a) => a.waitingHours >= 24);
  if (stale.length) {
    suggestions.push(
      `${stale.length} approval(s) have waited more than a day: add approvers, or configure a vault user (vault.user) to approve from the vault.`,
    );
  }
  if (!vaultUserOf(settings)) {
    suggestions.push('No vault user is configured: set vault.user to approve by moving files in the vault.');
  }
  const topCode = failureCodes[0];
  if (topCode && topCode.count >= 2) {
    suggestions.push(
      `${topCode.count} step(s) failed with ${topCode.code}: check the connection or tool behind it.`,
    );
  }
  if (n(c?.created) === 0) {
    suggestions.push('No new work arrived this week: connect an inbox, a webhook or a schedule.');
  }

  return {
    week: isoWeek(now, timezone),
    generatedAt: now.toISOString(),
    timezone,
    period: { from: from.toISOString(), to: now.toISOString() },
    tasks: {
      created: n(c?.created),
      done,
      failed: n(c?.failed),
      rejected: n(c?.rejected),
      cancelled: n(c?.cancelled),
      waiting: {
        needsAction: n(c?.needs_action),
        pendingApproval: n(c?.pending_approval),
        total: n(c?.needs_action) + n(c?.pending_approval),
      },
    },
    timeSaved: {
      minutesPerTask: perTask,
      tasks: done,
      minutes: done * perTask,
      hours: Math.round(((done * perTask) / 60) * 10) / 10,
      note: `an estimate: ${perTask} minutes per task Steward finished (setting briefing.minutesPerTask)`,
    },
    spend,
    bottlenecks: { oldestApprovals, failureCodes },
    suggestions,
  };
}

export function renderBriefing(b: Omit<Briefing, 'email'> & { email?: Briefing['email'] }): string {
  const lines = [
    `# Weekly briefing ${b.week}`,
    '',
    `From ${b.period.from} to ${b.period.to} (time zone ${b.timezone}).`,
    '',
    '## Work',
    '',
    `- Done: **${b.tasks.done}**`,
    `- Failed: **${b.tasks.failed}**`,
    `- Rejected: ${b.tasks.rejected}, cancelled: ${b.tasks.cancelled}`,
    `- New tasks: ${b.tasks.created}`,
    `- Waiting now: **${b.tasks.waiting.total}** (${b.tasks.waiting.needsAction} need a person, ${b.tasks.waiting.pendingApproval} wait for approval)`,
    '',
    '## Time saved',
    '',
    `About **${b.timeSaved.hours} hours** (${b.timeSaved.minutes} minutes) — ${b.timeSaved.note}.`,
    '',
    '## Spend',
    '',
    b.spend.recorded
      ? `${b.spend.calls} model call(s), ${b.spend.inputTokens} input and ${b.spend.outputTokens} output tokens${
          b.spend.cost !== null ? `, about ${b.spend.cost.toFixed(2)}` : ''
        } — ${b.spend.note}.`
      : `0 — ${b.spend.note}.`,
  ];
  for (const m of b.spend.byModel) {
    lines.push(
      `- ${inline(m.provider, 50)} ${inline(m.model, 100)}: ${m.calls} call(s), ${m.inputTokens} in / ${m.outputTokens} out`,
    );
  }
  lines.push('', '## Bottlenecks', '', '### Oldest waiting approvals', '');
  if (!b.bottlenecks.oldestApprovals.length) lines.push('None.');
  for (const a of b.bottlenecks.oldestApprovals) {
    lines.push(
      `- [[Pending_Approval/${a.approvalId}|${inline(a.tool, 60)}: ${inline(a.title, 120)}]] — waiting ${a.waitingHours} h`,
    );
  }
  lines.push('', '### Most common failures', '');
  if (!b.bottlenecks.failureCodes.length) lines.push('None.');
  for (const f of b.bottlenecks.failureCodes) lines.push(`- ${inline(f.code, 60)}: ${f.count}`);
  lines.push('', '## Suggestions', '');
  if (!b.suggestions.length) lines.push('Nothing to suggest this week.');
  for (const s of b.suggestions) lines.push(`- ${s}`);
  if (b.email) {
    lines.push('', '## E-mail', '', `${b.email.status}${b.email.reason ? `: ${b.email.reason}` : ''}`);
  }
  return withFrontMatter(
    {
      type: 'briefing',
      week: b.week,
      generated_at: b.generatedAt,
      period_from: b.period.from,
      period_to: b.period.to,
      done: b.tasks.done,
      failed: b.tasks.failed,
      waiting: b.tasks.waiting.total,
      time_saved_minutes: b.timeSaved.minutes,
      tags: ['steward/briefing'],
    },
    lines.join('\n'),
  );
}

/** Shape the e-mail arguments after the tool's own schema (to: string or list; text or body). */
function emailArgs(tool: Tool, to: string, subject: string, text: string): Record<string, unknown> {
  const props = ((tool.args as TSchema & { properties?: Record<string, TSchema> }).properties ??
    {}) as Record<string, TSchema & { type?: unknown; anyOf?: TSchema[] }>;
  const toSchema = props.to;
  const toIsList = toSchema?.type === 'array';
  const args: Record<string, unknown> = { to: toIsList ? [to] : to, subject };
  if ('text' in props) args.text = text;
  else if ('body' in props) args.body = text;
  else args.text = text;
  return args;
}

/**
 * Queue the briefing e-mail to the tenant's owners as a task with one email.send step per owner,
 * planned like any other task (so the approval policy applies and the executor's idempotency keys
 * prevent duplicates). At most once per tenant and week.
 */
async function queueEmail(
  res: Resources,
  tx: Tx,
  tenantId: string,
  b: Omit<Briefing, 'email'>,
  markdown: string,
): Promise<Briefing['email']> {
  const [tenant] = await tx<{ settings: Record<string, unknown>; name: string }[]>`
    select settings, name from tenants where id = ${tenantId}`;
  const settings = tenant?.settings ?? {};
  const tools = res.tools.forTenant(settings);
  const tool = tools.get('email.send');
  if (!tool) {
    return {
      status: 'not_configured',
      recipients: [],
      reason: 'e-mail is not configured: no email.send tool is available to this tenant',
    };
  }
  const owners = await tx<{ email: string }[]>`
    select u.email from memberships m
      join users u on u.id = m.user_id
      join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} and r.name = 'owner' and r.builtin and m.status = 'active' and u.status = 'active'
    order by u.email limit 20`;
  const recipients = owners.map((o) => o.email);
  if (!recipients.length) return { status: 'failed', recipients, reason: 'the tenant has no active owner' };
  const subject = `Weekly briefing ${b.week} — ${tenant?.name ?? ''}`.trim();
  const draft: PlanDraft = {
    summary: `E-mail the weekly briefing ${b.week} to the owners`,
    steps: recipients.map((to, i) => ({
      key: `email-${i + 1}`,
      tool: 'email.send',
      args: emailArgs(tool, to, subject, markdown),
      dependsOn: [],
    })),
  };
  const problems = validateDraft(draft, tools);
  if (problems.length) return { status: 'failed', recipients, reason: problems.join('; ') };

  const eventId = randomUUID();
  const taskId = randomUUID();
  const [inserted] = await tx<{ id: string }[]>`
    insert into events (tenant_id, id, source, type, external_id, subject, data, task_id)
    values (${tenantId}, ${eventId}, 'briefing', 'weekly_briefing', ${`briefing:${b.week}`}, ${subject},
            ${tx.json({ week: b.week } as never)}, ${taskId})
    on conflict (tenant_id, source, external_id) where external_id is not null do nothing
    returning id`;
  if (!inserted) {
    const [existing] = await tx<{ task_id: string }[]>`
      select task_id from events where tenant_id = ${tenantId} and source = 'briefing' and external_id = ${`briefing:${b.week}`}`;
    return {
      status: 'already_queued',
      recipients,
      ...(existing ? { taskId: existing.task_id } : {}),
      reason: `the briefing of ${b.week} was already e-mailed`,
    };
  }
  // The task is planned here, not by the planner: it must never be picked up by playbooks.
  const [task] = await tx<TaskRow[]>`
    insert into tasks (tenant_id, id, title, source, event_id, created_by_type, created_by_id, planner)
    values (${tenantId}, ${taskId}, ${subject.slice(0, 300)}, 'briefing', ${eventId}, 'system', null, null)
    returning *`;
  await res.audit.append(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'task.created',
    targetType: 'task',
    targetId: taskId,
    details: { eventId, source: 'briefing', type: 'weekly_briefing', externalId: `briefing:${b.week}` },
  });
  await storePlan(res, tx, task!, draft, tools, settings, 'briefing');
  return { status: 'queued', recipients, taskId };
}

/**
 * Write the weekly briefing of a tenant now: figures for the last 7 days, written to the vault as
 * `Briefings/<ISO week>.md` (the week of `now` in the tenant's time zone; a later briefing of the
 * same week replaces it) and, with `email`, queued to the owners. Audited as `briefing.created`.
 */
export async function createBriefing(
  res: Resources,
  tenantId: string,
  actor: Actor,
  opts: { email?: boolean; now?: Date } = {},
): Promise<Briefing> {
  const now = opts.now ?? new Date();
  return res.db.withTenant(tenantId, async (tx) => {
    const [tenant] = await tx<{ slug: string }[]>`select slug from tenants where id = ${tenantId}`;
    if (!tenant) throw new Error('tenant not found');
    const figures = await gather(tx, tenantId, now);
    const rel = `Briefings/${figures.week}.md`;
    const base = { ...figures, path: rel };
    const email: Briefing['email'] = opts.email
      ? await queueEmail(res, tx, tenantId, base, renderBriefing(base))
      : { status: 'not_requested', recipients: [] };
    const briefing: Briefing = { ...base, email };
    const root = vaultDir(res.dataDir, tenant.slug);
    await ensureFolder(path.join(root, 'Briefings'));
    await writeAtomic(fileIn(path.join(root, 'Briefings'), `${figures.week}.md`), renderBriefing(briefing));
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'briefing.created',
      targetType: 'briefing',
      targetId: figures.week,
      details: {
        path: rel,
        done: figures.tasks.done,
        failed: figures.tasks.failed,
        email: email.status,
        emailTaskId: email.taskId ?? null,
      },
    });
    return briefing;
  });
}

async function scheduleNext(
  tx: Tx,
  tenantId: string,
  settings: Record<string, unknown>,
  mode: 'replace' | 'preserve_run_at',
) {
  const runAt = nextBriefingAt(new Date(), tenantTimeZone(settings));
  await tx`select graphile_worker.add_job(
    ${BRIEFING_JOB}::text,
    ${tx.json({ tenantId } as never)}::json,
    run_at => ${runAt}::timestamptz,
    max_attempts => 5,
    job_key => ${`briefing:${tenantId}`}::text,
    job_key_mode => ${mode}::text
  )`;
  return runAt;
}

/** Make sure the tenant's weekly briefing job is queued (an existing one keeps its time). */
export async function ensureWeeklyBriefing(res: Resources, tenantId: string): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [tenant] = await tx<{ settings: Record<string, unknown> }[]>`
      select settings from tenants where id = ${tenantId} and status = 'active'`;
    if (!tenant || tenantId === PLATFORM_TENANT_ID) return;
    await scheduleNext(tx, tenantId, tenant.settings, 'preserve_run_at');
  });
}

/** The `weekly-briefing` job: write and e-mail the briefing, then queue next week's. */
export async function runWeeklyBriefing(res: Resources, tenantId: string): Promise<void> {
  const active = await res.db.withTenant(tenantId, async (tx) => {
    const [tenant] = await tx<{ status: string }[]>`select status from tenants where id = ${tenantId}`;
    return tenant?.status === 'active';
  });
  if (!active) return;
  await createBriefing(res, tenantId, SYSTEM_ACTOR, { email: true });
  await res.db.withTenant(tenantId, async (tx) => {
    const [tenant] = await tx<
      { settings: Record<string, unknown> }[]
    >`select settings from tenants where id = ${tenantId}`;
    await scheduleNext(tx, tenantId, tenant?.settings ?? {}, 'replace');
  });
}

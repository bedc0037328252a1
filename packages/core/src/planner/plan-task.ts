import { randomUUID } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { actionHash } from '../approvals/action-hash.ts';
import {
  decideStep,
  policyFromSettings,
  type ApprovalPolicy,
  type StepDecision,
} from '../approvals/approval-policy.ts';
import { advance } from '../executor/advance.ts';
import { enqueue } from '../executor/job-queue.ts';
import { takeReadySteps, type StepBudget, type TakenStep } from '../executor/run-step.ts';
import { executeSteps } from '../executor/execute-steps.ts';
import { auditActor, SYSTEM_ACTOR, type Resources } from '../resources.ts';
import type { StepRow, TaskRow } from '../tasks/task-types.ts';
import type { Tool } from '../tools/tool.ts';
import { eventView } from './event-view.ts';
import { validateDraft, type PlanDraft } from './plan-draft.ts';
import { planFromPlaybooks, type Playbook } from './playbook.ts';
import { readHandbook } from '../vault/handbook.ts';
import { llmConfigured } from './llm/llm-settings.ts';
import { toolsForTenant } from '../mcp/mcp-service.ts';
import { recordUsage } from './llm/llm-usage.ts';

export interface EventRow {
  task_id: string;
  external_id: string | null;
  source: string;
  type: string;
  sender: string | null;
  subject: string | null;
  body: string | null;
  data: Record<string, unknown>;
}

async function needsAction(
  res: Resources,
  tx: Tx,
  tenantId: string,
  taskId: string,
  reason: string,
): Promise<void> {
  await tx`update tasks set status = 'needs_action', needs_action_reason = ${reason}, updated_at = now()
           where tenant_id = ${tenantId} and id = ${taskId}`;
  await res.audit.record(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'task.needs_action',
    targetType: 'task',
    targetId: taskId,
    details: { reason },
  });
}

/** What planning needs of the tenant, read once per transaction (and once per batch of tasks). */
export interface PlanContext {
  slug: string;
  settings: Record<string, unknown>;
  tools: Map<string, Tool>;
  playbooks: Playbook[];
}

export async function loadPlanContext(res: Resources, tx: Tx, tenantId: string): Promise<PlanContext> {
  const [tenant] = await tx<{ slug: string; settings: Record<string, unknown> }[]>`
    select slug, settings from tenants where id = ${tenantId}`;
  const settings = tenant?.settings ?? {};
  const tools = await toolsForTenant(res, tx, tenantId, settings);
  const playbooks = await tx<(Omit<Playbook, 'when'> & { conditions: Playbook['when'] })[]>`
    select id, name, enabled, priority, conditions, steps from playbooks where tenant_id = ${tenantId} and enabled`;
  return {
    slug: tenant?.slug ?? '',
    settings,
    tools,
    playbooks: playbooks.map((p) => ({ ...p, when: p.conditions })),
  };
}

/** The task's event as the planner and its templates see it. */
export const viewOf = (event: EventRow) =>
  eventView({ ...event, from: event.sender, externalId: event.external_id });

/**
 * Plan one task from the tenant's playbooks inside the caller's transaction (the task row locked
 * and in `needs_action`): store the plan and take its first steps (returned, for the caller to run
 * after the commit), or send the task back to a person with the reason. `'model'` when no playbook
 * matched and the tenant plans with a model (the caller does that outside the transaction).
 */
export async function planWithPlaybooks(
  res: Resources,
  tx: Tx,
  task: TaskRow,
  event: EventRow | undefined,
  ctx: PlanContext,
  opts: { llm: boolean; budget?: StepBudget },
): Promise<TakenStep[] | 'model'> {
  const tenantId = task.tenant_id;
  if (!event) {
    await needsAction(res, tx, tenantId, task.id, 'the task has no event to plan from');
    return [];
  }
  const found = planFromPlaybooks(ctx.playbooks, viewOf(event));
  if (!found) {
    if (opts.llm && ctx.slug) return 'model';
    await needsAction(
      res,
      tx,
      tenantId,
      task.id,
      'no playbook matched this event; a person should look at it',
    );
    return [];
  }
  const problems = validateDraft(found.draft, ctx.tools);
  if (problems.length) {
    await needsAction(res, tx, tenantId, task.id, `the plan is invalid: ${problems.join('; ')}`);
    return [];
  }
  return storePlan(res, tx, task, found.draft, ctx.tools, ctx.settings, `playbook:${found.playbook.name}`, {
    slug: ctx.slug,
    ...(opts.budget ? { budget: opts.budget } : {}),
  });
}

/** What tx1 hands to the model when no playbook matched: nothing here holds a lock. */
interface ModelJob {
  slug: string;
  tools: Map<string, Tool>;
  view: ReturnType<typeof eventView>;
}

/**
 * The `plan-task` job: make a plan for a task in needs_action (playbooks offline; an LLM when one
 * is configured and no playbook matched), validate it against the tenant's tools, decide approvals
 * in code, store steps and approvals, and start what may start. The model is called between two
 * transactions, so a slow provider never holds a lock or a connection.
 */
export async function planTask(res: Resources, tenantId: string, taskId: string): Promise<void> {
  const llm = llmConfigured(res.llm);
  const first = await res.db.withTenant(tenantId, async (tx): Promise<ModelJob | TakenStep[] | undefined> => {
    const [task] = await tx<
      TaskRow[]
    >`select * from tasks where tenant_id = ${tenantId} and id = ${taskId} for update`;
    if (!task || task.status !== 'needs_action' || task.planner) return;
    const [event] = await tx<
      EventRow[]
    >`select * from events where tenant_id = ${tenantId} and task_id = ${taskId}`;
    const ctx = await loadPlanContext(res, tx, tenantId);
    const planned = await planWithPlaybooks(res, tx, task, event, ctx, { llm: !!llm });
    if (planned !== 'model') return planned;
    return { slug: ctx.slug, tools: ctx.tools, view: viewOf(event!) };
  });
  // The plan's first steps that need no approval were taken in the plan's transaction: run them here.
  if (Array.isArray(first)) return executeSteps(res, first);
  const job = first;
  if (!job || !llm) return;

  // Outside any transaction: the handbook, then the model (a network call).
  const handbook = await readHandbook(res.dataDir, job.slug).catch(() => null);
  // The provider SDKs load only in installations that plan with a model.
  const [{ createAdapter }, { planWithModel }] = await Promise.all([
    import('./llm/llm-adapter.ts'),
    import('./llm/llm-planner.ts'),
  ]);
  const adapter = createAdapter(llm);
  const result = await planWithModel({
    adapter,
    tools: job.tools,
    view: job.view,
    handbook: handbook ?? undefined,
  });

  const taken = await res.db.withTenant(tenantId, async (tx): Promise<TakenStep[] | void> => {
    await recordUsage(tx, tenantId, {
      taskId,
      provider: adapter.provider,
      model: adapter.model,
      calls: result.usage,
    });
    const [task] = await tx<
      TaskRow[]
    >`select * from tasks where tenant_id = ${tenantId} and id = ${taskId} for update`;
    if (!task || task.status !== 'needs_action' || task.planner) return;
    if (!result.ok) return needsAction(res, tx, tenantId, taskId, result.reason);
    // The tenant's tools may have changed while the model was thinking: validate again, in this tx.
    const [tenant] = await tx<{ slug: string; settings: Record<string, unknown> }[]>`
      select slug, settings from tenants where id = ${tenantId}`;
    const settings = tenant?.settings ?? {};
    const tools = await toolsForTenant(res, tx, tenantId, settings);
    const problems = validateDraft(result.draft, tools);
    if (problems.length)
      return needsAction(res, tx, tenantId, taskId, `the plan is invalid: ${problems.join('; ')}`);
    return storePlan(
      res,
      tx,
      task,
      result.draft,
      tools,
      settings,
      `llm:${adapter.provider}:${adapter.model}`.slice(0, 200),
      tenant ? { slug: tenant.slug } : undefined,
    );
  });
  if (taken) await executeSteps(res, taken);
}

/** Everyone a draft's steps would send to or pay (lower case), for the new-recipient rule. */
export function draftRecipients(draft: PlanDraft, tools: ReadonlyMap<string, Tool>): string[] {
  return draft.steps
    .flatMap((s) => tools.get(s.tool)?.recipients?.(s.args) ?? [])
    .map((r) => r.toLowerCase());
}

/** Which of these recipients the tenant has sent to or paid before. */
export async function knownRecipients(tx: Tx, tenantId: string, recipients: string[]): Promise<Set<string>> {
  if (!recipients.length) return new Set();
  const rows = await tx<{ value: string }[]>`
    select value from known_recipients where tenant_id = ${tenantId} and value = any(${recipients}::text[])`;
  return new Set(rows.map((r) => r.value));
}

/** The policy's decision for each step of a validated draft. */
export function decideDraft(
  policy: ApprovalPolicy,
  tools: ReadonlyMap<string, Tool>,
  draft: PlanDraft,
  known: ReadonlySet<string>,
): StepDecision[] {
  return draft.steps.map((s) =>
    decideStep(policy, tools.get(s.tool)!, s.args, { plannerRisk: s.risk, knownRecipients: known }),
  );
}

/**
 * Store a validated plan: steps, approvals decided by policy, then start what may start. With
 * `inline` (the tenant's slug), the steps that may start right away are taken in this transaction
 * and returned: the caller must run them (executeStep) after the commit; otherwise they are queued.
 */
export async function storePlan(
  res: Resources,
  tx: Tx,
  task: TaskRow,
  draft: PlanDraft,
  tools: ReadonlyMap<string, Tool>,
  settings: Record<string, unknown>,
  planner: string,
  inline?: { slug: string; budget?: StepBudget },
): Promise<TakenStep[]> {
  const tenantId = task.tenant_id;
  const policy = policyFromSettings(settings);
  const known = await knownRecipients(tx, tenantId, draftRecipients(draft, tools));
  const planSteps: {
    stepId: string;
    key: string;
    tool: string;
    args: Record<string, unknown>;
    hash: string;
  }[] = [];
  const previews: unknown[] = [];
  let position = 0;
  const expiresAt = new Date(Date.now() + policy.expiresInMinutes * 60_000);
  const decisions = decideDraft(policy, tools, draft, known);
  // Plan mode: when anything needs approval, nothing runs before the whole plan is approved, and
  // the approval's dry-run preview lists the side effects of every step.
  const planGate = policy.approvalMode === 'plan' && decisions.some((d) => d.required);
  for (const [i, s] of draft.steps.entries()) {
    const tool = tools.get(s.tool)!;
    const decided = decisions[i]!;
    const decision =
      planGate && !decided.required
        ? { ...decided, required: true, reasons: ['part of a plan that needs approval'] }
        : decided;
    const hash = actionHash(s.tool, s.args);
    const stepId = randomUUID();
    // The idempotency key is the step's identity: stable across every retry and every worker.
    await tx`
      insert into steps (tenant_id, id, task_id, key, position, tool, args, action_hash, depends_on, risk, compensation,
                         needs_approval, approval_reasons, status, idempotency_key, max_attempts, retryable)
      values (${tenantId}, ${stepId}, ${task.id}, ${s.key}, ${position++}, ${s.tool}, ${tx.json(s.args as never)}, ${hash},
              ${s.dependsOn}, ${decision.effectiveRisk}, ${s.compensation ? tx.json(s.compensation as never) : null},
              ${decision.required}, ${decision.reasons}, 'pending', ${`stw-${stepId}`}, ${tool.retryable ? 5 : 1},
              ${tool.retryable})`;
    if (!decision.required) continue;
    const preview = tool.preview(s.args);
    if (planGate) {
      planSteps.push({ stepId, key: s.key, tool: s.tool, args: s.args, hash });
      previews.push(...preview);
      continue;
    }
    const [approval] = await tx<{ id: string }[]>`
      insert into approvals (tenant_id, task_id, step_id, scope, action_hash, action, preview, reasons, quorum,
                             forbid_self, requested_by_type, requested_by_id, expires_at)
      values (${tenantId}, ${task.id}, ${stepId}, 'step', ${hash}, ${tx.json({ tool: s.tool, args: s.args } as never)},
              ${tx.json(preview as never)}, ${decision.reasons}, ${policy.quorum}, ${policy.forbidSelfApproval},
              ${task.created_by_type}, ${task.created_by_id}, ${expiresAt})
      returning id`;
    await enqueue(
      tx,
      'expire-approval',
      { tenantId, approvalId: approval!.id },
      { runAt: expiresAt, jobKey: `expire:${approval!.id}` },
    );
  }
  if (planSteps.length) {
    const hash = actionHash(
      'plan',
      planSteps.map((p) => ({ stepId: p.stepId, hash: p.hash })),
    );
    const [approval] = await tx<{ id: string }[]>`
      insert into approvals (tenant_id, task_id, scope, action_hash, action, preview, reasons, quorum, forbid_self,
                             requested_by_type, requested_by_id, expires_at)
      values (${tenantId}, ${task.id}, 'plan', ${hash}, ${tx.json({ steps: planSteps } as never)}, ${tx.json(previews as never)},
              ${[`${planSteps.length} step(s) of this plan need approval`]}, ${policy.quorum}, ${policy.forbidSelfApproval},
              ${task.created_by_type}, ${task.created_by_id}, ${expiresAt})
      returning id`;
    await enqueue(
      tx,
      'expire-approval',
      { tenantId, approvalId: approval!.id },
      { runAt: expiresAt, jobKey: `expire:${approval!.id}` },
    );
  }
  await tx`update tasks set status = 'planning', planner = ${planner}, plan_summary = ${draft.summary},
             needs_action_reason = null, updated_at = now()
           where tenant_id = ${tenantId} and id = ${task.id}`;
  task.status = 'planning';
  await res.audit.record(tx, tenantId, {
    ...auditActor(SYSTEM_ACTOR),
    action: 'task.planned',
    targetType: 'task',
    targetId: task.id,
    details: { planner, steps: draft.steps.map((s) => ({ key: s.key, tool: s.tool })) },
  });
  const ready: StepRow[] = [];
  // The caller locked (or inserted) the task row and it is current: advance needs no second read.
  await advance(res, tx, tenantId, task.id, { inline: inline ? ready : undefined, locked: task });
  if (!inline || !ready.length) return [];
  return takeReadySteps(res, tx, task, ready, tools, { slug: inline.slug, settings }, inline.budget);
}

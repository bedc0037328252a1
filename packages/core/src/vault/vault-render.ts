import type { ApprovalRow, PlanAction, StepRow, TaskRow } from '../tasks/task-types.ts';
import { fenced, inline, safeName, withFrontMatter, type VaultFolder } from './vault-files.ts';

/** What the vault shows, read from the database in one transaction. */
export interface VaultSnapshot {
  slug: string;
  tasks: TaskRow[];
  steps: StepRow[];
  events: {
    task_id: string;
    source: string;
    type: string;
    sender: string | null;
    subject: string | null;
    body: string | null;
  }[];
  approvals: ApprovalRow[];
  decisions: { approval_id: string; actor_label: string | null; decision: string; created_at: Date }[];
  counts: Record<string, number>;
  activity: {
    at: Date;
    actor_label: string | null;
    actor_type: string;
    action: string;
    target_type: string | null;
  }[];
  vaultUser: string | null;
  /** Rows left out because a folder reached its limit. */
  truncated: string[];
}

export interface VaultProblem {
  at: Date;
  file: string;
  message: string;
}

/** The folder a task belongs in, by status. */
export function taskFolder(status: string): VaultFolder {
  switch (status) {
    case 'needs_action':
      return 'Needs_Action';
    case 'rejected':
      return 'Rejected';
    case 'done':
    case 'failed':
    case 'cancelled':
      return 'Done';
    // planning, approved, executing and pending_approval: the plan is the thing to look at.
    default:
      return 'Plans';
  }
}

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);
const clip = (text: string, max: number) => (text.length > max ? text.slice(0, max) + '\n…' : text);

/** `<title> (<first 8 of id>).md`, or the full id when two tasks of a folder share the short name. */
export function taskFileNames(tasks: TaskRow[]): Map<string, string> {
  const names = new Map<string, string>();
  const used = new Set<string>();
  const sorted = [...tasks].sort((a, b) => a.id.localeCompare(b.id));
  for (const t of sorted) {
    const folder = taskFolder(t.status);
    let name = `${safeName(t.title)} (${t.id.slice(0, 8)}).md`;
    if (used.has(`${folder}/${name}`)) name = `${safeName(t.title)} (${t.id}).md`;
    used.add(`${folder}/${name}`);
    names.set(t.id, `${folder}/${name}`);
  }
  return names;
}

const STEP_DONE = new Set(['succeeded', 'compensated']);

function stepLine(s: StepRow): string {
  const box = STEP_DONE.has(s.status) ? 'x' : s.status === 'skipped' || s.status === 'cancelled' ? '-' : ' ';
  const extra = [
    `risk ${s.risk}`,
    s.needs_approval ? 'needs approval' : null,
    s.kind === 'compensation' ? 'compensation' : null,
    s.attempts > 1 ? `${s.attempts} attempts` : null,
  ]
    .filter(Boolean)
    .join(', ');
  const error = s.error
    ? ` — ${inline(String(s.error.code ?? 'error'), 60)}: ${inline(String(s.error.message ?? ''), 200)}`
    : '';
  return `- [${box}] \`${inline(s.key, 60)}\` ${inline(s.tool, 100)} (${extra}) — ${s.status}${error}`;
}

export function renderTask(snap: VaultSnapshot, t: TaskRow): string {
  const steps = snap.steps.filter((s) => s.task_id === t.id).sort((a, b) => a.position - b.position);
  const event = snap.events.find((e) => e.task_id === t.id);
  const approvals = snap.approvals.filter((a) => a.task_id === t.id);
  const data = {
    type: 'task',
    task_id: t.id,
    title: t.title,
    status: t.status,
    source: t.source,
    planner: t.planner,
    created_at: iso(t.created_at),
    updated_at: iso(t.updated_at),
    finished_at: iso(t.finished_at),
    tags: ['steward/task', `steward/${t.status}`],
  };
  const lines: string[] = [`# ${inline(t.title)}`, '', `**Status:** ${t.status}`];
  if (t.needs_action_reason)
    lines.push('', `**Needs a person because:** ${inline(t.needs_action_reason, 500)}`);
  if (event) {
    lines.push('', '## Request', '');
    lines.push(`- Source: ${inline(event.source, 60)} (${inline(event.type, 100)})`);
    if (event.sender) lines.push(`- From: ${inline(event.sender, 200)}`);
    if (event.subject) lines.push(`- Subject: ${inline(event.subject, 300)}`);
    if (event.body) {
      const body = event.body.length > 4000 ? event.body.slice(0, 4000) + '\n…' : event.body;
      lines.push('', fenced(body, 'text'));
    }
  }
  if (steps.length || t.plan_summary) {
    lines.push('', '## Plan', '');
    if (t.plan_summary) lines.push(inline(t.plan_summary, 1000), '');
    for (const s of steps) lines.push(stepLine(s));
  }
  if (approvals.length) {
    lines.push('', '## Approvals', '');
    for (const a of approvals) {
      const who = snap.decisions
        .filter((d) => d.approval_id === a.id)
        .map(
          (d) =>
            `${d.decision === 'approve' ? 'approved' : 'rejected'} by ${inline(d.actor_label ?? 'someone', 100)}`,
        );
      const link = a.status === 'pending' ? ` — [[Pending_Approval/${a.id}|decide]]` : '';
      lines.push(
        `- ${a.scope} approval \`${a.id}\`: ${a.status}${who.length ? ` (${who.join(', ')})` : ''}${link}`,
      );
    }
  }
  if (taskFolder(t.status) === 'Done' || t.status === 'rejected') {
    lines.push(
      '',
      '## Outcome',
      '',
      `${t.status}${t.finished_at ? ` at ${t.finished_at.toISOString()}` : ''}`,
    );
    if (t.error) {
      lines.push(
        `- Error: ${inline(String(t.error.code ?? 'error'), 60)} ${inline(String(t.error.message ?? ''), 500)}`,
      );
    }
    for (const s of steps.filter((x) => x.result)) {
      lines.push(
        `- \`${inline(s.key, 60)}\` result:`,
        '',
        fenced(clip(JSON.stringify(s.result, null, 2), 2000), 'json'),
        '',
      );
    }
  }
  return withFrontMatter(data, lines.join('\n'));
}

function approvalTool(a: ApprovalRow): string {
  if (a.scope === 'plan') return 'plan';
  return typeof a.action.tool === 'string' ? a.action.tool : 'unknown';
}

/** One approval as a file: the exact action it authorises and what it would do. */
export function renderApproval(snap: VaultSnapshot, a: ApprovalRow): string {
  const task = snap.tasks.find((t) => t.id === a.task_id);
  const approvals = snap.decisions.filter((d) => d.approval_id === a.id && d.decision === 'approve').length;
  const data = {
    type: 'approval',
    approval_id: a.id,
    task_id: a.task_id,
    tool: approvalTool(a),
    tools:
      a.scope === 'plan' ? ((a.action as unknown as PlanAction).steps ?? []).map((s) => s.tool) : undefined,
    scope: a.scope,
    status: a.status,
    action_hash: a.action_hash,
    expires_at: a.expires_at.toISOString(),
    quorum: a.quorum,
    approvals,
    tags: ['steward/approval'],
  };
  if (data.tools === undefined) delete data.tools;
  const lines: string[] = [
    `# Approval: ${inline(approvalTool(a), 100)}${task ? ` for "${inline(task.title, 200)}"` : ''}`,
    '',
  ];
  if (a.status === 'pending') {
    lines.push(
      '> Move this file to **Approved/** to approve exactly the action below, or to **Rejected/** to reject it.',
      `> It expires at ${a.expires_at.toISOString()}.${a.quorum > 1 ? ` It needs ${a.quorum} approvers (${approvals} so far).` : ''}`,
      '',
    );
  } else {
    lines.push(`**Status:** ${a.status}${a.decided_at ? ` at ${a.decided_at.toISOString()}` : ''}`, '');
  }
  if (task) lines.push(`Task: [[${taskFileNames([task]).get(task.id)!.replace(/\.md$/, '')}]]`, '');
  if (a.reasons.length) {
    lines.push('## Why approval is needed', '');
    for (const r of a.reasons) lines.push(`- ${inline(r, 300)}`);
    lines.push('');
  }
  lines.push('## Action (exact)', '', fenced(JSON.stringify(a.action, null, 2), 'json'), '');
  lines.push('## Preview', '');
  const preview = Array.isArray(a.preview) ? a.preview : [];
  if (!preview.length) lines.push('- (no side effects listed)');
  for (const p of preview as { kind?: unknown; summary?: unknown; target?: unknown }[]) {
    const target = p.target ? ` → ${inline(String(p.target), 200)}` : '';
    lines.push(
      `- ${inline(String(p.kind ?? 'effect'), 60)}: ${inline(String(p.summary ?? ''), 300)}${target}`,
    );
  }
  const who = snap.decisions.filter((d) => d.approval_id === a.id);
  if (who.length) {
    lines.push('', '## Decisions', '');
    for (const d of who)
      lines.push(
        `- ${d.decision} by ${inline(d.actor_label ?? 'someone', 100)} at ${d.created_at.toISOString()}`,
      );
  }
  return withFrontMatter(data, lines.join('\n'));
}

export function renderDashboard(snap: VaultSnapshot, problems: VaultProblem[]): string {
  const pending = snap.approvals
    .filter((a) => a.status === 'pending')
    .sort((a, b) => a.created_at.getTime() - b.created_at.getTime());
  const total = Object.values(snap.counts).reduce((s, n) => s + n, 0);
  const lines: string[] = ['# Dashboard', '', '## Tasks by status', '', '| Status | Tasks |', '|---|---:|'];
  for (const status of [
    'needs_action',
    'planning',
    'pending_approval',
    'approved',
    'executing',
    'done',
    'rejected',
    'failed',
    'cancelled',
  ]) {
    lines.push(`| ${status} | ${snap.counts[status] ?? 0} |`);
  }
  lines.push(`| **total** | **${total}** |`, '', `## Waiting for approval (${pending.length})`, '');
  if (!pending.length) lines.push('Nothing is waiting for approval.');
  for (const a of pending) {
    const task = snap.tasks.find((t) => t.id === a.task_id);
    lines.push(
      `- [[Pending_Approval/${a.id}|${inline(approvalTool(a), 60)}${task ? `: ${inline(task.title, 120)}` : ''}]] — since ${a.created_at.toISOString()}, expires ${a.expires_at.toISOString()}`,
    );
  }
  lines.push('', '## Approving from the vault', '');
  lines.push(
    snap.vaultUser
      ? `Files moved to Approved/ or Rejected/ are decided as **${inline(snap.vaultUser, 200)}** (setting \`vault.user\`).`
      : 'No vault user is configured (tenant setting `vault.user`), so files moved to Approved/ or Rejected/ decide nothing.',
  );
  if (problems.length) {
    lines.push('', '## Vault problems', '');
    for (const p of problems)
      lines.push(`- ${p.at.toISOString()} \`${inline(p.file, 200)}\`: ${inline(p.message, 500)}`);
  }
  if (snap.truncated.length) {
    lines.push('', '## Not shown', '');
    for (const t of snap.truncated) lines.push(`- ${t}`);
  }
  lines.push('', '## Recent activity', '');
  if (!snap.activity.length) lines.push('Nothing yet.');
  for (const e of snap.activity) {
    const who = e.actor_label ?? e.actor_type;
    lines.push(
      `- ${e.at.toISOString()} ${inline(e.action, 60)} by ${inline(who, 100)}${e.target_type ? ` (${inline(e.target_type, 40)})` : ''}`,
    );
  }
  return withFrontMatter({ type: 'dashboard', tags: ['steward/dashboard'] }, lines.join('\n'));
}

import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Tx } from '@steward/db/database';
import type { Resources } from '../resources.ts';
import type { ApprovalRow, StepRow, TaskRow } from '../tasks/task-types.ts';
import { ensureHandbook } from './handbook.ts';
import {
  ensureFolder,
  fileIn,
  parseFrontMatter,
  readIfExists,
  removeIfExists,
  vaultDir,
  VAULT_FOLDERS,
  writeAtomic,
} from './vault-files.ts';
import {
  renderApproval,
  renderDashboard,
  renderTask,
  taskFileNames,
  type VaultProblem,
  type VaultSnapshot,
} from './vault-render.ts';

/** Folders the syncer owns files in (Briefings/ is written by the briefing, never cleaned). */
const SYNCED_FOLDERS = ['Needs_Action', 'Plans', 'Pending_Approval', 'Approved', 'Rejected', 'Done'] as const;

export interface VaultLimits {
  /** Open tasks shown (newest first). */
  openTasks: number;
  /** Finished tasks shown in Done/ and Rejected/ (newest first)... */
  finishedTasks: number;
  /** ...finished within this many days; decided approvals likewise. */
  finishedDays: number;
}

export const DEFAULT_VAULT_LIMITS: VaultLimits = { openTasks: 1000, finishedTasks: 500, finishedDays: 30 };

/** The tenant's configured vault user (setting `vault.user`, an e-mail address), or null. */
export function vaultUserOf(settings: Record<string, unknown>): string | null {
  const nested = (settings.vault as { user?: unknown } | undefined)?.user;
  const value = nested ?? settings['vault.user'];
  return typeof value === 'string' && value.trim() ? value.trim().toLowerCase() : null;
}

export async function loadSnapshot(
  tx: Tx,
  tenantId: string,
  limits: VaultLimits = DEFAULT_VAULT_LIMITS,
): Promise<VaultSnapshot> {
  const [tenant] = await tx<{ slug: string; settings: Record<string, unknown> }[]>`
    select slug, settings from tenants where id = ${tenantId}`;
  if (!tenant) throw new Error('tenant not found');
  const since = new Date(Date.now() - limits.finishedDays * 86_400_000);
  const open = await tx<TaskRow[]>`
    select * from tasks where tenant_id = ${tenantId}
      and status in ('needs_action', 'planning', 'pending_approval', 'approved', 'executing')
    order by created_at desc limit ${limits.openTasks + 1}`;
  const finished = await tx<TaskRow[]>`
    select * from tasks where tenant_id = ${tenantId}
      and status in ('done', 'rejected', 'failed', 'cancelled') and coalesce(finished_at, updated_at) > ${since}
    order by coalesce(finished_at, updated_at) desc limit ${limits.finishedTasks + 1}`;
  const truncated: string[] = [];
  if (open.length > limits.openTasks) {
    open.pop();
    truncated.push(`only the newest ${limits.openTasks} open tasks are shown`);
  }
  if (finished.length > limits.finishedTasks) {
    finished.pop();
    truncated.push(`only the newest ${limits.finishedTasks} finished tasks are shown`);
  }
  const tasks = [...open, ...finished];
  const ids = tasks.map((t) => t.id);
  const steps = ids.length
    ? await tx<StepRow[]>`select * from steps where tenant_id = ${tenantId} and task_id = any(${ids}::uuid[])`
    : [];
  const events = ids.length
    ? await tx<VaultSnapshot['events']>`
        select task_id, source, type, sender, subject, left(body, 4001) as body from events
        where tenant_id = ${tenantId} and task_id = any(${ids}::uuid[])`
    : [];
  const approvals = await tx<ApprovalRow[]>`
    select * from approvals where tenant_id = ${tenantId}
      and ((status = 'pending' and expires_at > now()) or task_id = any(${ids}::uuid[])
           or (status in ('approved', 'rejected') and decided_at > ${since}))
    order by created_at limit 5000`;
  const decisions = approvals.length
    ? await tx<VaultSnapshot['decisions']>`
        select approval_id, actor_label, decision, created_at from approval_decisions
        where tenant_id = ${tenantId} and approval_id = any(${approvals.map((a) => a.id)}::uuid[])
        order by created_at`
    : [];
  const counts = await tx<{ status: string; n: string }[]>`
    select status, count(*) as n from tasks where tenant_id = ${tenantId} group by status`;
  const activity = await tx<VaultSnapshot['activity']>`
    select at, actor_label, actor_type, action, target_type from audit_log
    where tenant_id = ${tenantId} order by seq desc limit 15`;
  return {
    slug: tenant.slug,
    tasks,
    steps,
    events,
    approvals,
    decisions,
    counts: Object.fromEntries(counts.map((c) => [c.status, Number(c.n)])),
    activity,
    vaultUser: vaultUserOf(tenant.settings),
    truncated,
  };
}

/** The files the vault should hold (relative path → content), from a snapshot. */
export function desiredFiles(snap: VaultSnapshot, problems: VaultProblem[]): Map<string, string> {
  const files = new Map<string, string>();
  const names = taskFileNames(snap.tasks);
  for (const t of snap.tasks) files.set(names.get(t.id)!, renderTask(snap, t));
  const now = Date.now();
  for (const a of snap.approvals) {
    if (a.status === 'pending' && a.expires_at.getTime() > now) {
      files.set(`Pending_Approval/${a.id}.md`, renderApproval(snap, a));
    } else if (a.status === 'approved' || a.status === 'rejected') {
      files.set(`${a.status === 'approved' ? 'Approved' : 'Rejected'}/${a.id}.md`, renderApproval(snap, a));
    }
  }
  files.set('Dashboard.md', renderDashboard(snap, problems));
  return files;
}

/**
 * A note moved into Approved/ or Rejected/ by a person, asking for a decision: an approval note
 * whose recorded status does not match the folder it is now in.
 */
export function isDecisionRequest(folder: string, data: Record<string, unknown>): boolean {
  if (data.type !== 'approval' || typeof data.approval_id !== 'string') return false;
  if (folder === 'Approved') return data.status !== 'approved';
  if (folder === 'Rejected') return data.status !== 'rejected';
  return false;
}

/** Per-tenant memory of what was written (content and mtime), so unchanged files are not rewritten. */
export type WrittenFiles = Map<string, { content: string; mtimeMs: number }>;

async function mtimeOf(file: string): Promise<number | null> {
  try {
    return (await stat(file)).mtimeMs;
  } catch {
    return null;
  }
}

/**
 * Rewrite a tenant's vault from the database: every file it should hold is written atomically
 * when its content changed; Steward's own notes (type task/approval) that no longer belong where
 * they are are removed. People's own files, *.error.md notes and undecided requests are left alone.
 */
export async function syncTenantVault(
  res: Resources,
  tenantId: string,
  opts: { written?: WrittenFiles; problems?: VaultProblem[]; limits?: VaultLimits } = {},
): Promise<{ slug: string; written: number; removed: number }> {
  const snap = await res.db.withTenant(tenantId, (tx) => loadSnapshot(tx, tenantId, opts.limits));
  const root = vaultDir(res.dataDir, snap.slug);
  const written: WrittenFiles = opts.written ?? new Map();
  await ensureFolder(root);
  for (const folder of VAULT_FOLDERS) await ensureFolder(path.join(root, folder));
  await ensureHandbook(root);

  const files = desiredFiles(snap, opts.problems ?? []);
  let count = 0;
  for (const [rel, content] of files) {
    const [folder, name] = rel.includes('/') ? (rel.split('/') as [string, string]) : ['', rel];
    const file = fileIn(folder ? path.join(root, folder) : root, name);
    const known = written.get(file);
    // Unchanged since we wrote it (nobody edited or moved it): nothing to do.
    if (known?.content === content && known.mtimeMs === (await mtimeOf(file))) continue;
    if ((await readIfExists(file)) !== content) {
      await writeAtomic(file, content);
      count++;
    }
    const mtimeMs = await mtimeOf(file);
    if (mtimeMs !== null) written.set(file, { content, mtimeMs });
  }

  let removed = 0;
  for (const folder of SYNCED_FOLDERS) {
    const dir = path.join(root, folder);
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.md') || entry.name.endsWith('.error.md')) continue;
      if (files.has(`${folder}/${entry.name}`)) continue;
      const file = path.join(dir, entry.name);
      const text = await readIfExists(file);
      const note = text ? parseFrontMatter(text) : null;
      if (!note || (note.data.type !== 'task' && note.data.type !== 'approval')) continue;
      if (isDecisionRequest(folder, note.data)) continue;
      await removeIfExists(file);
      written.delete(file);
      removed++;
    }
  }
  return { slug: snap.slug, written: count, removed };
}

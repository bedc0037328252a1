import type { Tx } from '@steward/db/database';
import { BUILTIN_ROLES } from '../identity/permissions.ts';

/**
 * The compliance reports of one tenant, read inside its own transaction (RLS applies):
 * - access-review: every member and API key with role, permissions, status, last activity, MFA;
 * - config-changes: the audit log's changes to settings, roles, members, keys, connections,
 *   policies, playbooks, schedules, webhooks and SIEM destinations;
 * - violations: what the audit log records as refused or failed (denied requests, failed sign-ins,
 *   rejected and expired approvals, refresh-token reuse, ...).
 */

export const REPORT_KINDS = ['access-review', 'config-changes', 'violations'] as const;
export type ReportKind = (typeof REPORT_KINDS)[number];

/** Most rows a report holds (the report says when it was cut). */
export const MAX_REPORT_ROWS = 10_000;

export interface ReportColumn {
  key: string;
  header: string;
  /** Relative width in the PDF. */
  width: number;
}

export interface Report {
  kind: ReportKind;
  title: string;
  tenant: { id: string; slug: string; name: string };
  generatedAt: string;
  period: { since: string | null; until: string | null };
  columns: ReportColumn[];
  rows: Record<string, string | number | null>[];
  truncated: boolean;
  notes: string[];
}

export interface ReportQuery {
  since?: string | undefined;
  until?: string | undefined;
}

const TITLES: Record<ReportKind, string> = {
  'access-review': 'Access review',
  'config-changes': 'Configuration change history',
  violations: 'Policy violations',
};

/** Audit actions that change configuration (prefixes); other helpers' settings families included. */
export const CONFIG_ACTION_PREFIXES = [
  'tenant.',
  'role.',
  'user.',
  'api_key.',
  'connection.',
  'mcp_server.',
  'playbook.',
  'schedule.',
  'webhook.',
  'siem.',
  'policy.',
  'guard.',
  'sso.',
  'mfa.',
  'settings.',
  'platform_admin.',
  'vault.',
  'key.',
];

/** Actions that are violations whatever their outcome. */
export const VIOLATION_ACTIONS = [
  'access.denied',
  'approval.rejected',
  'approval.expired',
  'approval.vault_decision_refused',
  'auth.refresh_reuse',
  'task.rejected',
];

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

function permissionsOf(role: { name: string; builtin: boolean; permissions: string[] }): string {
  const list = role.builtin ? (BUILTIN_ROLES[role.name]?.permissions ?? []) : role.permissions;
  return [...list].sort().join(' ');
}

async function accessReview(
  tx: Tx,
  tenantId: string,
  report: Report,
  mfa: ReadonlySet<string>,
): Promise<void> {
  report.columns = [
    { key: 'type', header: 'Type', width: 0.7 },
    { key: 'principal', header: 'User / key', width: 1.8 },
    { key: 'name', header: 'Name', width: 1.1 },
    { key: 'role', header: 'Role', width: 0.8 },
    { key: 'status', header: 'Status', width: 0.7 },
    { key: 'mfa', header: 'MFA', width: 0.6 },
    { key: 'lastActivity', header: 'Last sign-in / use', width: 1.3 },
    { key: 'createdAt', header: 'Created', width: 1.3 },
    { key: 'expiresAt', header: 'Expires', width: 1.3 },
    { key: 'permissions', header: 'Permissions', width: 3 },
  ];
  report.notes.push('MFA: enabled means a confirmed TOTP authenticator or at least one passkey.');
  const members = await tx<
    {
      user_id: string;
      email: string;
      name: string;
      user_status: string;
      status: string;
      last_login_at: Date | null;
      created_at: Date;
      role: string;
      builtin: boolean;
      permissions: string[];
    }[]
  >`select u.id as user_id, u.email, u.name, u.status as user_status, m.status, u.last_login_at, m.created_at,
      r.name as role, r.builtin, r.permissions
    from memberships m join users u on u.id = m.user_id
    join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
    where m.tenant_id = ${tenantId} order by u.email limit ${MAX_REPORT_ROWS + 1}`;
  for (const m of members) {
    report.rows.push({
      type: 'user',
      principal: m.email,
      name: m.name,
      role: m.role,
      status: m.user_status === 'active' ? m.status : m.user_status,
      mfa: mfa.has(m.user_id) ? 'enabled' : 'disabled',
      lastActivity: iso(m.last_login_at) ?? 'never',
      createdAt: iso(m.created_at),
      expiresAt: null,
      permissions: permissionsOf({ name: m.role, builtin: m.builtin, permissions: m.permissions }),
    });
  }
  const keys = await tx<
    {
      name: string;
      prefix: string;
      created_at: Date;
      expires_at: Date | null;
      last_used_at: Date | null;
      revoked_at: Date | null;
      role: string;
      builtin: boolean;
      permissions: string[];
      created_by: string | null;
    }[]
  >`select k.name, k.prefix, k.created_at, k.expires_at, k.last_used_at, k.revoked_at, r.name as role,
      r.builtin, r.permissions, u.email as created_by
    from api_keys k join roles r on r.tenant_id = k.tenant_id and r.id = k.role_id
    left join users u on u.id = k.created_by
    where k.tenant_id = ${tenantId} order by k.created_at limit ${MAX_REPORT_ROWS + 1}`;
  const now = Date.now();
  for (const k of keys) {
    report.rows.push({
      type: 'api_key',
      principal: `${k.prefix}… (${k.name})`,
      name: k.created_by ? `created by ${k.created_by}` : '',
      role: k.role,
      status: k.revoked_at ? 'revoked' : k.expires_at && k.expires_at.getTime() <= now ? 'expired' : 'active',
      mfa: 'n/a',
      lastActivity: iso(k.last_used_at) ?? 'never',
      createdAt: iso(k.created_at),
      expiresAt: iso(k.expires_at),
      permissions: permissionsOf({ name: k.role, builtin: k.builtin, permissions: k.permissions }),
    });
  }
}

const AUDIT_COLUMNS: ReportColumn[] = [
  { key: 'at', header: 'When', width: 1.4 },
  { key: 'seq', header: 'Seq', width: 0.4 },
  { key: 'action', header: 'Action', width: 1.4 },
  { key: 'outcome', header: 'Outcome', width: 0.7 },
  { key: 'actor', header: 'Actor', width: 1.5 },
  { key: 'target', header: 'Target', width: 1.5 },
  { key: 'ip', header: 'IP', width: 0.9 },
  { key: 'details', header: 'Details', width: 3 },
];

async function auditRows(tx: Tx, tenantId: string, report: Report, filter: ReturnType<Tx>) {
  report.columns = AUDIT_COLUMNS;
  const { since, until } = report.period;
  const rows = await tx<
    {
      seq: string;
      at: Date;
      action: string;
      outcome: string;
      actor_type: string;
      actor_label: string | null;
      actor_id: string | null;
      target_type: string | null;
      target_id: string | null;
      ip: string | null;
      details: Record<string, unknown>;
    }[]
  >`select seq, at, action, outcome, actor_type, actor_label, actor_id, target_type, target_id, ip, details
    from audit_log where tenant_id = ${tenantId} and (${filter})
      ${since ? tx`and at >= ${since}::text::timestamptz` : tx``}
      ${until ? tx`and at < ${until}::text::timestamptz` : tx``}
    order by seq limit ${MAX_REPORT_ROWS + 1}`;
  for (const r of rows) {
    report.rows.push({
      at: r.at.toISOString(),
      seq: Number(r.seq),
      action: r.action,
      outcome: r.outcome,
      actor: r.actor_label ?? (r.actor_id ? `${r.actor_type} ${r.actor_id}` : r.actor_type),
      target: r.target_type ? `${r.target_type} ${r.target_id ?? ''}`.trim() : null,
      ip: r.ip,
      details: JSON.stringify(r.details),
    });
  }
}

export async function buildReport(
  tx: Tx,
  tenantId: string,
  kind: ReportKind,
  q: ReportQuery,
  /** Members with a second factor (access review; read by the caller under system access). */
  mfaUsers: ReadonlySet<string> = new Set(),
): Promise<Report> {
  const [tenant] = await tx<{ id: string; slug: string; name: string }[]>`
    select id, slug, name from tenants where id = ${tenantId}`;
  const report: Report = {
    kind,
    title: TITLES[kind],
    tenant: tenant!,
    generatedAt: new Date().toISOString(),
    period:
      kind === 'access-review'
        ? { since: null, until: null }
        : { since: q.since ?? null, until: q.until ?? null },
    columns: [],
    rows: [],
    truncated: false,
    notes: [],
  };
  if (kind === 'access-review') await accessReview(tx, tenantId, report, mfaUsers);
  else if (kind === 'config-changes') {
    const likes = CONFIG_ACTION_PREFIXES.map((p) => p.replace(/[_%\\]/g, '\\$&') + '%');
    await auditRows(tx, tenantId, report, tx`action like any(${likes}::text[])`);
  } else {
    await auditRows(
      tx,
      tenantId,
      report,
      tx`outcome in ('failure', 'denied') or action = any(${VIOLATION_ACTIONS}::text[])`,
    );
  }
  if (report.rows.length > MAX_REPORT_ROWS) {
    report.rows.length = MAX_REPORT_ROWS;
    report.truncated = true;
    report.notes.push(
      `Only the first ${MAX_REPORT_ROWS} rows are included: narrow the period (since, until).`,
    );
  }
  return report;
}

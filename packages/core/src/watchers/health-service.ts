import { toUseHealth, type HealthRow } from '../connections/connection-health.ts';
import type { Resources } from '../resources.ts';
import type { ConnectionHealth, TenantHealth, WatcherHealth } from './health-shapes.ts';
import { FOLDER_LEASE, IMAP_LEASE, SCHEDULER_LEASE } from './watchers.ts';

export type * from './health-shapes.ts';

const WATCHERS = [FOLDER_LEASE, SCHEDULER_LEASE, IMAP_LEASE];

/**
 * What the background work looks like from one tenant: the installation's watcher leases (who
 * leads and when it last renewed; the holder's name only for platform administrators), the tenant's
 * IMAP mailboxes, how far behind each of its SIEM destinations is, and when each connection and MCP
 * server was last used successfully or failed (and why, safely). Only what is recorded.
 */
export async function tenantHealth(
  res: Resources,
  tenantId: string,
  opts: { showHolders: boolean },
): Promise<TenantHealth> {
  // Leases are installation-wide, not tenant data: read under system access, names fixed above.
  const leases = await res.db.withSystemAccess(
    (tx) => tx<{ name: string; holder: string; renewed_at: Date; expires_at: Date; live: boolean }[]>`
      select name, holder, renewed_at, expires_at, expires_at > now() as live
      from leases where name = any(${WATCHERS})`,
  );
  const watchers = WATCHERS.map((name): WatcherHealth => {
    const l = leases.find((x) => x.name === name);
    return {
      name,
      state: !l ? 'never' : l.live ? 'held' : 'expired',
      holder: l && opts.showHolders ? l.holder : null,
      renewedAt: l?.renewed_at.toISOString() ?? null,
      expiresAt: l?.expires_at.toISOString() ?? null,
    };
  });
  return res.db.withTenant(tenantId, async (tx) => {
    const mailboxes = await tx<{ id: string; name: string; updated_at: Date | null }[]>`
      select c.id, c.name, s.updated_at
      from connections c left join imap_state s on s.tenant_id = c.tenant_id and s.connection_id = c.id
      where c.tenant_id = ${tenantId} and c.kind = 'imap' order by c.name`;
    const siem = await tx<
      {
        id: string;
        name: string;
        enabled: boolean;
        last_seq: string | null;
        head_seq: string | null;
        last_error: string | null;
        last_error_at: Date | null;
      }[]
    >`
      select d.id, d.name, d.enabled, c.last_seq, c.last_error, c.last_error_at,
        (select seq from audit_heads h where h.tenant_id = ${tenantId}) as head_seq
      from siem_destinations d
      left join siem_cursors c on c.tenant_id = d.tenant_id and c.destination = 'tenant:' || d.id::text
      where d.tenant_id = ${tenantId} order by d.name`;
    const used = await tx<
      (HealthRow & { id: string; kind: ConnectionHealth['kind']; name: string; enabled: boolean })[]
    >`
      select id, kind, name, true as enabled, last_success_at, last_error_at, last_error
        from connections where tenant_id = ${tenantId}
      union all
      select id, 'mcp', name, enabled, last_success_at, last_error_at, last_error
        from mcp_servers where tenant_id = ${tenantId}
      order by 2, 3`;
    return {
      watchers,
      mailboxes: mailboxes.map((m) => ({
        id: m.id,
        name: m.name,
        lastProgressAt: m.updated_at?.toISOString() ?? null,
      })),
      siem: siem.map((d) => ({
        id: d.id,
        name: d.name,
        enabled: d.enabled,
        lag: Math.max(0, Number(d.head_seq ?? 0) - Number(d.last_seq ?? 0)),
        // A delivery clears the error: one recorded means the latest attempt failed.
        failing: d.last_error !== null,
        lastErrorAt: d.last_error_at?.toISOString() ?? null,
      })),
      connections: used.map((c) => ({
        id: c.id,
        kind: c.kind,
        name: c.name,
        enabled: c.enabled,
        ...toUseHealth(c),
      })),
      checkedAt: new Date().toISOString(),
    };
  });
}

import type { Tx } from '@steward/db/database';

/** What a tool or watcher used: a connection (SMTP, HTTP, IMAP) or an MCP server. */
export interface UsedTarget {
  table: 'connections' | 'mcp_servers';
  id: string;
}

/** What went wrong, as the tool reports it (a stable code and its own message). */
export interface UseFailure {
  code: string;
  message: string;
}

export const MAX_HEALTH_ERROR = 300;

/**
 * A failure as it may be stored and shown: the code and the message, with every secret the caller
 * knows scrubbed, credentials in URLs and bearer/basic tokens masked, one line, at most 300 chars.
 */
export function safeFailureText(failure: UseFailure, secrets: readonly (string | undefined)[] = []): string {
  let text = failure.message;
  for (const s of secrets) {
    if (!s || s.length < 4) continue;
    text = text.split(s).join('[secret]');
  }
  text = text
    .replace(/\b([a-z][a-z0-9+.-]*:\/\/)[^/\s:@]*:[^/\s@]*@/gi, '$1[credentials]@')
    .replace(/\b(bearer|basic|token|password|passwd|pwd|secret|api[_-]?key)([=:\s]+)\S+/gi, '$1$2[secret]')
    .replace(/[\r\n\t\0]+/g, ' ')
    .trim();
  const code = /^[A-Z][A-Z0-9_]{0,59}$/.test(failure.code) ? failure.code : 'ERROR';
  const full = `${code}: ${text || 'failed'}`;
  return full.length > MAX_HEALTH_ERROR ? `${full.slice(0, MAX_HEALTH_ERROR - 1)}…` : full;
}

/**
 * Record that a connection or MCP server was used: a success stamps last_success_at, a failure
 * stamps last_error_at with a safe message. Best effort: health bookkeeping never fails the work
 * it describes (a lost write only makes the health view older). `withTenant` scopes to the tenant.
 */
export async function recordUse(
  withTenant: <T>(fn: (tx: Tx) => Promise<T>) => Promise<T>,
  tenantId: string,
  target: UsedTarget,
  failure?: UseFailure,
  secrets: readonly (string | undefined)[] = [],
): Promise<void> {
  try {
    await withTenant(async (tx) => {
      const table = tx(target.table);
      if (failure) {
        const text = safeFailureText(failure, secrets);
        await tx`update ${table} set last_error_at = clock_timestamp(), last_error = ${text}
                 where tenant_id = ${tenantId} and id = ${target.id}`;
      } else {
        await tx`update ${table} set last_success_at = clock_timestamp()
                 where tenant_id = ${tenantId} and id = ${target.id}`;
      }
    });
  } catch {
    /* best effort, see above */
  }
}

export type HealthState = 'ok' | 'failing' | 'never';

/** never: neither recorded; failing: the latest recorded use failed; ok: the latest succeeded. */
export function healthState(lastSuccessAt: Date | null, lastErrorAt: Date | null): HealthState {
  if (!lastSuccessAt && !lastErrorAt) return 'never';
  if (lastErrorAt && (!lastSuccessAt || lastErrorAt >= lastSuccessAt)) return 'failing';
  return 'ok';
}

/** The health of one connection or MCP server, as its views (GET and list) carry it. */
export interface UseHealth {
  state: HealthState;
  lastSuccessAt: string | null;
  lastErrorAt: string | null;
  /** A short, safe description of the latest failure (never a secret). */
  lastError: string | null;
}

/** The health columns a view selects (`healthColumns(tx)`) and reads back (`toUseHealth`). */
export interface HealthRow {
  last_success_at: Date | null;
  last_error_at: Date | null;
  last_error: string | null;
}

export const healthColumns = (tx: Tx) => tx`last_success_at, last_error_at, last_error`;

export const toUseHealth = (r: HealthRow): UseHealth => ({
  state: healthState(r.last_success_at, r.last_error_at),
  lastSuccessAt: r.last_success_at?.toISOString() ?? null,
  lastErrorAt: r.last_error_at?.toISOString() ?? null,
  lastError: r.last_error,
});

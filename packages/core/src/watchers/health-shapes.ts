/**
 * The answer of GET /api/v1/health. Plain types with no imports, so the web dashboard (and any
 * other client) uses these very declarations instead of a copy.
 */

export interface WatcherHealth {
  name: string;
  /** held: a process holds the lease now; expired: its holder stopped renewing it; never: never taken. */
  state: 'held' | 'expired' | 'never';
  /** The holding process (`host:process-table:pid:random`), for platform administrators only. */
  holder: string | null;
  renewedAt: string | null;
  expiresAt: string | null;
}

export interface MailboxHealth {
  id: string;
  name: string;
  /** When the IMAP watcher last recorded progress (a new message turned into an event). */
  lastProgressAt: string | null;
}

export interface SiemHealth {
  id: string;
  name: string;
  enabled: boolean;
  /** Audit entries of this tenant not yet acknowledged by the destination. */
  lag: number;
  failing: boolean;
  lastErrorAt: string | null;
}

/** A connection or MCP server, as tools and watchers last used it. */
export interface ConnectionHealth {
  id: string;
  kind: 'smtp' | 'http' | 'imap' | 'mcp';
  name: string;
  /** MCP servers can be disabled; connections are always enabled. */
  enabled: boolean;
  /** ok: the latest recorded use succeeded; failing: it failed; never: no use recorded. */
  state: 'ok' | 'failing' | 'never';
  lastSuccessAt: string | null;
  lastErrorAt: string | null;
  /** A short, safe description of the latest failure (never a secret). */
  lastError: string | null;
}

export interface TenantHealth {
  watchers: WatcherHealth[];
  mailboxes: MailboxHealth[];
  siem: SiemHealth[];
  connections: ConnectionHealth[];
  checkedAt: string;
}

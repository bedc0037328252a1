import type {
  ConnectionHealth,
  MailboxHealth,
  SiemHealth,
  WatcherHealth,
} from '@steward/core/watchers/health-shapes';

/**
 * The answer of GET /api/v1/health as this panel reads it: the server's own declarations
 * (packages/core/src/watchers/health-shapes.ts, type-only, nothing of the server is bundled).
 */
export interface HealthReport {
  watchers: Pick<WatcherHealth, 'name' | 'state' | 'holder' | 'renewedAt'>[];
  mailboxes: MailboxHealth[];
  siem: SiemHealth[];
  /** Connections (SMTP, HTTP, IMAP) and MCP servers as tools and watchers last used them. */
  connections?: ConnectionHealth[];
}

export interface HealthLine {
  key: string;
  ok: boolean | undefined;
  text: string;
  /** The state in words (ok, failing, never used…), shown as a badge beside the text. */
  state?: string;
  /** The latest failure, safe to show (a code and a short message). */
  detail?: string;
}

const KIND_LABEL: Record<string, string> = { smtp: 'SMTP', http: 'HTTP', imap: 'IMAP', mcp: 'MCP' };

const WATCHER_LABEL: Record<string, string> = {
  'watch:folder': 'Folder watcher',
  scheduler: 'Scheduler',
  'watch:imap': 'Mailbox watcher',
};

const ago = (iso: string, now: number) => {
  const s = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};

/** One line per watcher, mailbox and SIEM destination; `ok` undefined when nothing says either way. */
export function describeHealth(h: HealthReport, now = Date.now()): HealthLine[] {
  const lines: HealthLine[] = h.watchers.map((w) => ({
    key: `w:${w.name}`,
    ok: w.state === 'held' ? true : w.state === 'expired' ? false : undefined,
    text:
      `${WATCHER_LABEL[w.name] ?? w.name}: ` +
      (w.state === 'held'
        ? `running${w.holder ? ` on ${w.holder}` : ''}, renewed ${ago(w.renewedAt!, now)}`
        : w.state === 'expired'
          ? `stopped (last renewed ${ago(w.renewedAt!, now)})`
          : 'never started'),
  }));
  for (const m of h.mailboxes)
    lines.push({
      key: `m:${m.id}`,
      ok: undefined,
      text: `Mailbox ${m.name}: ${m.lastProgressAt ? `last new mail ${ago(m.lastProgressAt, now)}` : 'no mail read yet'}`,
    });
  for (const d of h.siem)
    lines.push({
      key: `s:${d.id}`,
      ok: !d.enabled ? undefined : !d.failing,
      text:
        `SIEM ${d.name}: ` +
        (!d.enabled
          ? 'disabled'
          : d.failing
            ? `failing since ${ago(d.lastErrorAt!, now)}, ${d.lag} entr${d.lag === 1 ? 'y' : 'ies'} behind`
            : d.lag === 0
              ? 'up to date'
              : `${d.lag} entr${d.lag === 1 ? 'y' : 'ies'} behind`),
    });
  for (const c of h.connections ?? []) {
    const label = `${KIND_LABEL[c.kind] ?? c.kind} ${c.name}`;
    if (!c.enabled) {
      lines.push({ key: `c:${c.id}`, ok: undefined, state: 'disabled', text: `${label}: disabled` });
      continue;
    }
    lines.push(
      c.state === 'ok'
        ? {
            key: `c:${c.id}`,
            ok: true,
            state: 'ok',
            text: `${label}: last used ${ago(c.lastSuccessAt!, now)}`,
            ...(c.lastErrorAt
              ? { detail: `last failure ${ago(c.lastErrorAt, now)}: ${c.lastError ?? ''}` }
              : {}),
          }
        : c.state === 'failing'
          ? {
              key: `c:${c.id}`,
              ok: false,
              state: 'failing',
              text:
                `${label}: failing since ${ago(c.lastErrorAt!, now)}` +
                (c.lastSuccessAt ? ` (last worked ${ago(c.lastSuccessAt, now)})` : ' (never worked)'),
              ...(c.lastError ? { detail: c.lastError } : {}),
            }
          : { key: `c:${c.id}`, ok: undefined, state: 'never used', text: `${label}: never used` },
    );
  }
  return lines;
}

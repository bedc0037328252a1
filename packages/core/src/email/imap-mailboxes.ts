import { createHash } from 'node:crypto';
import { vaultFor, type ImapConfig } from '../connections/connection-service.ts';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import type { Resources } from '../resources.ts';
import { resolveChecked } from '../tools/builtin/network-guard.ts';
import { ImapWatcher, type ImapAccount } from './imap-watcher.ts';

export interface ImapMailboxesOptions {
  /** How often the list of IMAP connections is re-read (new, changed and removed mailboxes). */
  refreshMs?: number;
  log?: (level: 'info' | 'warn', message: string) => void;
}

interface Running {
  fingerprint: string;
  watcher: ImapWatcher;
}

/** Every IMAP connection of every active tenant, with its password decrypted (kept in memory only). */
async function loadAccounts(res: Resources, log: ImapMailboxesOptions['log']): Promise<ImapAccount[]> {
  const tenants = await res.db.withSystemAccess(
    (tx) => tx<{ id: string; settings: Record<string, unknown> }[]>`
      select id, settings from tenants where status = 'active' and id <> ${PLATFORM_TENANT_ID}`,
  );
  const vault = vaultFor(res.master);
  const accounts: ImapAccount[] = [];
  for (const t of tenants) {
    const rows = await res.db.withTenant(t.id, async (tx) => {
      const list = await tx<
        {
          id: string;
          name: string;
          config: ImapConfig;
          secret_ciphertext: Buffer | null;
          secret_nonce: Buffer | null;
        }[]
      >`
        select id, name, config, secret_ciphertext, secret_nonce from connections where tenant_id = ${t.id} and kind = 'imap'`;
      const out: (ImapAccount & { allowPrivate: boolean })[] = [];
      for (const c of list) {
        if (!c.secret_ciphertext || !c.secret_nonce) {
          log?.('warn', `IMAP connection ${c.name} of tenant ${t.id} has no password; skipped`);
          continue;
        }
        const password = await vault.decrypt(tx, t.id, c.id, {
          ciphertext: c.secret_ciphertext,
          nonce: c.secret_nonce,
        });
        const secure = c.config.secure ?? true;
        out.push({
          tenantId: t.id,
          connectionId: c.id,
          host: c.config.host,
          port: c.config.port ?? (secure ? 993 : 143),
          secure,
          username: c.config.username,
          password,
          mailbox: c.config.mailbox ?? 'INBOX',
          allowPrivate:
            c.config.allowPrivateNetwork === true ||
            (t.settings.network as { allowPrivate?: unknown } | undefined)?.allowPrivate === true,
        });
      }
      return out;
    });
    for (const a of rows) {
      // The same network rules as http.request: no private or metadata addresses unless allowed.
      try {
        const checked = await resolveChecked(a.host, { allowPrivate: a.allowPrivate });
        accounts.push({ ...a, host: checked.address, servername: a.host });
      } catch (error) {
        log?.('warn', `IMAP connection ${a.connectionId}: ${(error as Error).message}`);
      }
    }
  }
  return accounts;
}

function fingerprint(a: ImapAccount): string {
  return createHash('sha256')
    .update(JSON.stringify([a.host, a.port, a.secure, a.username, a.password, a.mailbox]))
    .digest('hex');
}

/**
 * Runs one ImapWatcher per IMAP connection and keeps the set in step with the connections table
 * (added, changed or deleted mailboxes). Run it in one process only (under a lease).
 */
export function startImapMailboxes(
  res: Resources,
  opts: ImapMailboxesOptions = {},
): { stop(): Promise<void> } {
  const running = new Map<string, Running>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let refreshing: Promise<void> = Promise.resolve();

  const refresh = async () => {
    let accounts: ImapAccount[];
    try {
      accounts = await loadAccounts(res, opts.log);
    } catch (error) {
      opts.log?.('warn', `could not read IMAP connections: ${(error as Error).message}`);
      return;
    }
    if (stopped) return;
    const wanted = new Map(accounts.map((a) => [a.connectionId, a]));
    for (const [id, r] of running) {
      const a = wanted.get(id);
      if (!a || fingerprint(a) !== r.fingerprint) {
        running.delete(id);
        await r.watcher.stop();
      }
    }
    for (const [id, a] of wanted) {
      if (running.has(id)) continue;
      const watcher = new ImapWatcher(res, a, { log: opts.log });
      running.set(id, { fingerprint: fingerprint(a), watcher });
      watcher.start();
    }
  };
  const loop = () => {
    refreshing = refresh().finally(() => {
      if (!stopped) timer = setTimeout(loop, opts.refreshMs ?? 15_000);
    });
  };
  loop();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await refreshing.catch(() => {});
      await Promise.all([...running.values()].map((r) => r.watcher.stop()));
      running.clear();
    },
  };
}

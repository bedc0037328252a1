import { ImapFlow } from 'imapflow';
import { SYSTEM_ACTOR, type Resources } from '../resources.ts';
import type { Tx } from '@steward/db/database';
import { recordUse } from '../connections/connection-health.ts';
import { submitEvent } from '../tasks/task-service.ts';
import { parseMail } from './parse-mail.ts';

export interface ImapAccount {
  tenantId: string;
  connectionId: string;
  /** The address to connect to (already checked against the network rules). */
  host: string;
  /** The host name for TLS certificate checks, when `host` is an address. */
  servername?: string;
  port: number;
  secure: boolean;
  username: string;
  password: string;
  mailbox: string;
}

export interface ImapWatcherOptions {
  /** Polling fallback for servers without IDLE (and for missed notifications). */
  pollIntervalMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  log?: (level: 'info' | 'warn', message: string) => void;
}

/** The event an e-mail becomes: deduplicated by its Message-ID (or the mailbox UID when it has none). */
export async function messageToEvent(
  source: Buffer,
  uidValidity: bigint | number,
  uid: number,
  mailbox: string,
) {
  const mail = await parseMail(source);
  return {
    source: 'email',
    type: 'message',
    externalId: mail.messageId ?? `${mailbox}:${uidValidity}:${uid}`.slice(0, 500),
    from: mail.from,
    subject: mail.subject,
    body: mail.body,
    data: {
      to: mail.to,
      cc: mail.cc,
      date: mail.date,
      mailbox,
      uid,
      attachments: mail.attachments,
    },
  };
}

/**
 * Watches one mailbox: catches up on messages newer than the last UID it remembers, then waits
 * with IDLE (and polls as a fallback). Survives restarts (the last UID is stored) and server
 * disconnects (it reconnects with backoff). Every message becomes one event.
 */
export class ImapWatcher {
  readonly #res: Resources;
  readonly #account: ImapAccount;
  readonly #opts: Required<Omit<ImapWatcherOptions, 'log'>> & Pick<ImapWatcherOptions, 'log'>;
  #client: ImapFlow | undefined;
  #stopped = false;
  #syncing: Promise<void> = Promise.resolve();
  #pollTimer: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  /** Messages turned into events since start (for tests and metrics). */
  processed = 0;

  constructor(res: Resources, account: ImapAccount, opts: ImapWatcherOptions = {}) {
    this.#res = res;
    this.#account = account;
    this.#opts = {
      pollIntervalMs: opts.pollIntervalMs ?? 30_000,
      reconnectMinMs: opts.reconnectMinMs ?? 1000,
      reconnectMaxMs: opts.reconnectMaxMs ?? 60_000,
      log: opts.log,
    };
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    await this.#client?.logout().catch(() => this.#client?.close());
    await this.#loop?.catch(() => {});
  }

  async #run(): Promise<void> {
    let delay = this.#opts.reconnectMinMs;
    while (!this.#stopped) {
      try {
        await this.#session();
        delay = this.#opts.reconnectMinMs;
      } catch (error) {
        this.#opts.log?.('warn', `imap ${this.#account.host}: ${(error as Error).message}`);
        await this.#recordFailure(error);
      }
      if (this.#stopped) break;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(this.#opts.reconnectMaxMs, delay * 2);
    }
  }

  /** One connection, until the server or stop() closes it. */
  async #session(): Promise<void> {
    const a = this.#account;
    const client = new ImapFlow({
      host: a.host,
      port: a.port,
      secure: a.secure,
      auth: { user: a.username, pass: a.password },
      ...(a.servername ? { servername: a.servername } : {}),
      logger: false,
      emitLogs: false,
    });
    this.#client = client;
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.on('error', (e: Error) => this.#opts.log?.('warn', `imap ${a.host}: ${e.message}`));
    await client.connect();
    await client.mailboxOpen(a.mailbox);
    client.on('exists', () => this.#schedule(client));
    this.#pollTimer = setInterval(() => this.#schedule(client), this.#opts.pollIntervalMs);
    this.#schedule(client);
    await closed;
    clearInterval(this.#pollTimer);
  }

  #schedule(client: ImapFlow): void {
    this.#syncing = this.#syncing
      .then(() => this.#sync(client))
      .then(() => this.#recordSuccess())
      .catch(async (e: unknown) => {
        this.#opts.log?.('warn', `imap sync failed: ${(e as Error).message}`);
        await this.#recordFailure(e);
      });
  }

  /** Fetch every message after the remembered UID, in order, and submit each as an event. */
  async #sync(client: ImapFlow): Promise<void> {
    if (this.#stopped || !client.usable) return;
    const a = this.#account;
    const mailbox = client.mailbox;
    if (!mailbox) return;
    const uidValidity = BigInt(mailbox.uidValidity);
    const state = await this.#res.db.withTenant(a.tenantId, async (tx) => {
      const [row] = await tx<{ uidvalidity: string; last_uid: string }[]>`
        select uidvalidity, last_uid from imap_state where tenant_id = ${a.tenantId} and connection_id = ${a.connectionId}`;
      return row;
    });
    // A new UIDVALIDITY means the server renumbered the mailbox: start over (Message-IDs dedupe).
    let last = state && BigInt(state.uidvalidity) === uidValidity ? Number(state.last_uid) : 0;
    if (mailbox.exists === 0) return this.#save(uidValidity, last);
    const uids = (await client.search({ uid: `${last + 1}:*` }, { uid: true })) || [];
    for (const uid of uids.filter((u) => u > last).sort((x, y) => x - y)) {
      if (this.#stopped) return;
      const msg = await client.fetchOne(String(uid), { source: true, uid: true }, { uid: true });
      if (!msg || !msg.source) continue;
      const event = await messageToEvent(msg.source, uidValidity, uid, a.mailbox);
      await submitEvent(this.#res, a.tenantId, { ...SYSTEM_ACTOR, label: `imap ${a.username}` }, event);
      last = uid;
      await this.#save(uidValidity, last);
      this.processed++;
    }
  }

  /** Health: a sync that went through. Written at most once a minute while nothing fails. */
  async #recordSuccess(): Promise<void> {
    if (this.#stopped) return;
    const now = Date.now();
    if (this.#lastRecord === 'ok' && now - this.#lastRecordAt < 60_000) return;
    this.#lastRecord = 'ok';
    this.#lastRecordAt = now;
    await recordUse(this.#withTenant, this.#account.tenantId, this.#target);
  }

  /** Health: why the mailbox could not be read (the password scrubbed from the message). */
  async #recordFailure(error: unknown): Promise<void> {
    if (this.#stopped) return;
    this.#lastRecord = 'failed';
    this.#lastRecordAt = Date.now();
    const e = error as { message?: unknown; authenticationFailed?: unknown; code?: unknown };
    const code =
      e.authenticationFailed === true
        ? 'IMAP_AUTH_FAILED'
        : typeof e.code === 'string' && /^E[A-Z]+$/.test(e.code)
          ? `IMAP_${e.code.slice(1)}`
          : 'IMAP_FAILED';
    await recordUse(
      this.#withTenant,
      this.#account.tenantId,
      this.#target,
      { code, message: typeof e.message === 'string' ? e.message : 'the mailbox could not be read' },
      [this.#account.password],
    );
  }

  #lastRecord: 'ok' | 'failed' | undefined;
  #lastRecordAt = 0;
  get #target() {
    return { table: 'connections', id: this.#account.connectionId } as const;
  }
  #withTenant = <T>(fn: (tx: Tx) => Promise<T>) => this.#res.db.withTenant(this.#account.tenantId, fn);

  async #save(uidValidity: bigint, lastUid: number): Promise<void> {
    const a = this.#account;
    await this.#res.db.withTenant(
      a.tenantId,
      (tx) => tx`
      insert into imap_state (tenant_id, connection_id, uidvalidity, last_uid) values (${a.tenantId}, ${a.connectionId}, ${uidValidity.toString()}, ${lastUid})
      on conflict (tenant_id, connection_id) do update set uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, updated_at = now()`,
    );
  }
}

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { watch, type FSWatcher } from 'chokidar';
import { parse as parseYaml } from 'yaml';
import type { Actor, Resources } from '../resources.ts';
import { parseMail } from '../email/parse-mail.ts';
import { submitEvent, type EventInput, type Intake } from '../tasks/task-service.ts';

/**
 * The folder watcher: every active tenant has an inbox, `<dataDir>/tenants/<slug>/inbox/`. A
 * markdown or text file dropped there becomes an event (source `folder`, type `file`) and so a task.
 *
 * - Dedupe: externalId = sha256(relative path, NUL, content). The same file dropped twice is one
 *   task; an edited file (new content) is a new one.
 * - After intake the file is MOVED to `inbox/.processed/<time>-<name>` (the inbox shows what is
 *   still waiting; nothing needs to be remembered in memory across restarts). A file that changed
 *   while it was being read is left in place and read again.
 * - Files larger than `maxBytes` (1 MB) are not read: their event says the file is too large.
 * - Only regular files with .md, .markdown, .txt or .eml are taken; symbolic links, dotfiles and
 *   other types are left alone (a link could point anywhere on the host).
 * - An `.eml` file (a saved e-mail) becomes the same event as a message the IMAP watcher receives
 *   (source `email`, type `message`, parsed with mailparser): sender, recipients, subject and text
 *   body; its Message-ID is the externalId (so the same message dropped twice, or dropped and also
 *   received over IMAP, is one task; without one, the file hash); attachments are listed by name,
 *   type and size, never inlined. Its size limit is `maxEmailBytes` (25 MB).
 * - Changes are noticed through inotify (chokidar) within ~0.2 s once the file stops growing; a scan
 *   every few seconds picks up new tenants, retries files whose intake failed, and covers missed
 *   notifications.
 */

export const INBOX_EXTENSIONS = new Set(['.md', '.markdown', '.txt', '.eml']);
export const PROCESSED_DIR = '.processed';
const DEFAULT_MAX_BYTES = 1_048_576;
const DEFAULT_MAX_EMAIL_BYTES = 25 * 1_048_576;

const ACTOR: Actor = { type: 'system', label: 'folder watcher' };

export interface InboxTenant {
  id: string;
  slug: string;
}

export function inboxPath(dataDir: string, slug: string): string {
  return path.join(dataDir, 'tenants', slug, 'inbox');
}

/** The task title of a dropped file: front-matter title, else the first markdown heading, else its name. */
export function fileSubject(name: string, content: string): string {
  const clean = (s: string) => s.replace(/\s+/g, ' ').trim().slice(0, 300);
  const fm = /^---\r?\n([\s\S]*?)\r?\n---\r?\n?/.exec(content);
  if (fm) {
    try {
      const meta = parseYaml(fm[1]!, { maxAliasCount: 10 }) as unknown;
      const title = (meta as { title?: unknown } | null)?.title;
      if (typeof title === 'string' && clean(title)) return clean(title);
    } catch {
      // not YAML: fall through
    }
  }
  if (/\.(md|markdown)$/i.test(name)) {
    const heading = /^#{1,6}[ \t]+(.+?)[ \t#]*$/m.exec(content.slice(0, 100_000));
    if (heading && clean(heading[1]!)) return clean(heading[1]!);
  }
  return clean(name) || 'file';
}

async function hashFile(file: string, prefix: string): Promise<string> {
  const h = createHash('sha256').update(prefix);
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export interface IntakeOptions {
  maxBytes?: number;
  /** The size limit of `.eml` files (attachments make them larger; default 25 MB). */
  maxEmailBytes?: number;
}

/** The event of a dropped `.eml` file: what the IMAP watcher makes of the same message. */
export async function emailFileEvent(rel: string, bytes: Buffer): Promise<EventInput> {
  const mail = await parseMail(bytes);
  return {
    source: 'email',
    type: 'message',
    externalId:
      mail.messageId ?? `folder:${createHash('sha256').update(`${rel}\0`).update(bytes).digest('hex')}`,
    from: mail.from,
    subject: mail.subject,
    body: mail.body,
    data: {
      to: mail.to,
      cc: mail.cc,
      date: mail.date,
      file: rel,
      size: bytes.length,
      attachments: mail.attachments,
    },
  };
}

/**
 * Turn one inbox file into an event, then move it to `.processed/`. Undefined when the file is not
 * one to take (gone, not a regular file, wrong extension).
 */
export async function intakeFile(
  res: Resources,
  tenant: InboxTenant,
  inbox: string,
  file: string,
  opts: IntakeOptions = {},
): Promise<Intake | undefined> {
  const email = path.extname(file).toLowerCase() === '.eml';
  const maxBytes = email
    ? (opts.maxEmailBytes ?? DEFAULT_MAX_EMAIL_BYTES)
    : (opts.maxBytes ?? DEFAULT_MAX_BYTES);
  const rel = path.relative(inbox, file).split(path.sep).join('/');
  if (!rel || rel.startsWith('..') || rel.split('/').some((p) => p.startsWith('.'))) return undefined;
  const name = path.basename(file);
  if (!INBOX_EXTENSIONS.has(path.extname(name).toLowerCase())) return undefined;
  const before = await lstat(file).catch(() => undefined);
  if (!before?.isFile()) return undefined;

  const prefix = `${rel}\0`;
  let event: EventInput;
  if (before.size > maxBytes) {
    event = {
      source: 'folder',
      type: 'file',
      externalId: await hashFile(file, prefix),
      from: 'folder',
      subject: name.slice(0, 300),
      body: `The file "${name}" is too large to read (${before.size} bytes; the limit is ${maxBytes} bytes).`,
      data: { file: rel, size: before.size, tooLarge: true },
    };
  } else if (email) {
    event = await emailFileEvent(rel, await readFile(file));
  } else {
    const bytes = await readFile(file);
    // PostgreSQL text cannot hold NUL characters.
    const content = bytes.toString('utf8').replace(/\0/g, '');
    event = {
      source: 'folder',
      type: 'file',
      externalId: createHash('sha256').update(prefix).update(bytes).digest('hex'),
      from: 'folder',
      subject: fileSubject(name, content),
      body: content,
      data: { file: rel, size: before.size },
    };
  }
  const intake = await submitEvent(res, tenant.id, ACTOR, event);
  // The processed file's name carries a short hash of the event's identity.
  const externalId = createHash('sha256')
    .update(event.externalId ?? '')
    .digest('hex');
  const after = await lstat(file).catch(() => undefined);
  if (after && after.size === before.size && after.mtimeMs === before.mtimeMs) {
    const dir = path.join(inbox, PROCESSED_DIR);
    await mkdir(dir, { recursive: true });
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    await rename(file, path.join(dir, `${stamp}-${externalId.slice(0, 8)}-${name}`)).catch(
      (error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOENT') throw error; // another watcher moved it first
      },
    );
  }
  return intake;
}

export interface FolderWatcherOptions {
  /** How often the tenant list is refreshed and every inbox scanned (default 3000 ms). */
  scanMs?: number;
  /** A file must stop changing this long before it is read (default 150 ms). */
  stabilityMs?: number;
  maxBytes?: number;
  maxEmailBytes?: number;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** Called after each intake (tests and metrics). */
  onIntake?: (tenant: InboxTenant, file: string, intake: Intake) => void;
}

export interface FolderWatcherHandle {
  stop(): Promise<void>;
  /** Resolves after the first tenant refresh and initial scan. */
  ready: Promise<void>;
}

/** Active tenants (not the platform tenant), read under system access. */
async function activeTenants(res: Resources): Promise<InboxTenant[]> {
  return res.db.withSystemAccess(
    (tx) => tx<InboxTenant[]>`select id, slug from tenants where status = 'active' order by slug`,
  );
}

/** Watch every active tenant's inbox until stop(). Run it in one process only (the 'watch:folder' lease). */
export function startFolderWatcher(res: Resources, opts: FolderWatcherOptions = {}): FolderWatcherHandle {
  const scanMs = opts.scanMs ?? 3000;
  const stabilityMs = opts.stabilityMs ?? 150;
  const log = opts.log ?? (() => {});
  const tenants = new Map<string, InboxTenant>(); // inbox path -> tenant
  const inFlight = new Set<string>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const watcher: FSWatcher = watch([], {
    depth: 0,
    ignoreInitial: false,
    followSymlinks: false,
    awaitWriteFinish: { stabilityThreshold: stabilityMs, pollInterval: 50 },
    ignored: (p: string) => {
      const base = path.basename(p);
      return base.startsWith('.') && !tenants.has(p);
    },
  });

  const take = async (file: string) => {
    if (stopped || inFlight.has(file)) return;
    const inbox = path.dirname(file);
    const tenant = tenants.get(inbox);
    if (!tenant) return;
    inFlight.add(file);
    try {
      const intake = await intakeFile(res, tenant, inbox, file, {
        maxBytes: opts.maxBytes,
        maxEmailBytes: opts.maxEmailBytes,
      });
      if (intake) {
        log(
          'info',
          `inbox of ${tenant.slug}: ${path.basename(file)} -> task ${intake.taskId}${intake.duplicate ? ' (duplicate)' : ''}`,
        );
        opts.onIntake?.(tenant, file, intake);
      }
    } catch (error) {
      log(
        'error',
        `inbox of ${tenant.slug}: could not take ${path.basename(file)}: ${(error as Error).message}`,
      );
    } finally {
      inFlight.delete(file);
    }
  };
  watcher.on('add', (file: string) => void take(file));
  watcher.on('change', (file: string) => void take(file));
  watcher.on('error', (error: unknown) => log('warn', `folder watcher: ${(error as Error).message}`));

  /** Files chokidar may have missed: settled ones only (not modified in the last 2 s). */
  const scan = async (inbox: string) => {
    const entries = await readdir(inbox, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isFile() || e.name.startsWith('.')) continue;
      const file = path.join(inbox, e.name);
      const st = await lstat(file).catch(() => undefined);
      if (st && Date.now() - st.mtimeMs > 2000) await take(file);
    }
  };

  const refresh = async () => {
    let list: InboxTenant[];
    try {
      list = await activeTenants(res);
    } catch (error) {
      log('warn', `folder watcher: could not list tenants: ${(error as Error).message}`);
      return;
    }
    const wanted = new Map(list.map((t) => [inboxPath(res.dataDir, t.slug), t]));
    for (const [inbox, tenant] of wanted) {
      if (tenants.has(inbox)) continue;
      try {
        await mkdir(inbox, { recursive: true });
      } catch (error) {
        log('warn', `inbox of ${tenant.slug}: ${(error as Error).message}`);
        continue;
      }
      tenants.set(inbox, tenant);
      watcher.add(inbox);
    }
    for (const inbox of [...tenants.keys()]) {
      if (wanted.has(inbox)) continue;
      tenants.delete(inbox);
      await watcher.unwatch(inbox);
    }
    for (const inbox of tenants.keys()) {
      if (stopped) return;
      await scan(inbox);
    }
  };

  const loop = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      pass = refresh().finally(loop);
    }, scanMs);
  };
  let pass: Promise<void> = refresh().finally(loop);

  return {
    ready: pass,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await pass.catch(() => {});
      await watcher.close();
      // Let in-flight intakes finish (each is one short transaction).
      for (let i = 0; i < 100 && inFlight.size; i++) await new Promise((r) => setTimeout(r, 20));
    },
  };
}

import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { cp, mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar';
import type { Tx } from '@steward/db/database';
import { enqueue } from '../executor/job-queue.ts';
import { conflict, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { exportFilePath, exportsDir } from './export-files.ts';
import { tenantTables } from './tenant-tables.ts';

export type ExportScope = 'tenant' | 'user';
export type ExportStatus = 'queued' | 'running' | 'done' | 'failed';

export interface ExportView {
  id: string;
  scope: ExportScope;
  subjectUserId: string | null;
  status: ExportStatus;
  progress: number;
  stage: string | null;
  fileName: string | null;
  sizeBytes: number | null;
  sha256: string | null;
  error: string | null;
  createdAt: string;
  finishedAt: string | null;
}

interface Row {
  id: string;
  scope: ExportScope;
  subject_user_id: string | null;
  status: ExportStatus;
  progress: number;
  stage: string | null;
  file_name: string | null;
  size_bytes: string | null;
  sha256: string | null;
  error: string | null;
  created_at: Date;
  finished_at: Date | null;
}

const toView = (r: Row): ExportView => ({
  id: r.id,
  scope: r.scope,
  subjectUserId: r.subject_user_id,
  status: r.status,
  progress: r.progress,
  stage: r.stage,
  fileName: r.file_name,
  sizeBytes: r.size_bytes === null ? null : Number(r.size_bytes),
  sha256: r.sha256,
  error: r.error,
  createdAt: r.created_at.toISOString(),
  finishedAt: r.finished_at?.toISOString() ?? null,
});

/** Columns never exported: secrets, their ciphertext and hashes of credentials. */
const SECRET_COLUMN = /(secret|password|token|key_hash|wrapped|nonce|ciphertext)/i;

/** Queue an export (the job and the row commit together). */
export async function requestExport(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { scope: ExportScope; userId?: string | undefined },
): Promise<ExportView> {
  return res.db.withTenant(tenantId, async (tx) => {
    if (input.scope === 'user') {
      if (!input.userId) throw conflict('userId: required for a user export');
      const [m] =
        await tx`select 1 from memberships where tenant_id = ${tenantId} and user_id = ${input.userId}`;
      if (!m) throw notFound('user');
    }
    const [row] = await tx<Row[]>`
      insert into privacy_exports (tenant_id, scope, subject_user_id, requested_by)
      values (${tenantId}, ${input.scope}, ${input.scope === 'user' ? input.userId! : null}, ${actor.id ?? actor.type})
      returning *`;
    await enqueue(
      tx,
      'privacy-export',
      { tenantId, exportId: row!.id },
      { jobKey: `privacy-export:${row!.id}`, maxAttempts: 3 },
    );
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'privacy.export_requested',
      targetType: 'export',
      targetId: row!.id,
      details: { scope: input.scope, ...(input.userId ? { userId: input.userId } : {}) },
    });
    return toView(row!);
  });
}

export async function listExports(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<ExportView>> {
  const after = decodeCursor(q.cursor, ['createdAt', 'id']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select * from privacy_exports where tenant_id = ${tenantId}
        ${after ? tx`and (created_at, id) < (${after.createdAt}::text::timestamptz, ${after.id}::uuid)` : tx``}
      order by created_at desc, id desc limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = rows[q.limit - 1];
    return {
      items,
      nextCursor:
        rows.length > q.limit && last
          ? encodeCursor({ createdAt: last.created_at.toISOString(), id: last.id })
          : null,
    };
  });
}

export async function getExport(res: Resources, tenantId: string, id: string): Promise<ExportView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<Row[]>`select * from privacy_exports where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('export');
  return toView(row);
}

/** A finished archive to stream, audited as a download. */
export async function openExportDownload(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<{ file: string; fileName: string; size: number }> {
  const view = await getExport(res, tenantId, id);
  if (view.status !== 'done' || !view.fileName)
    throw conflict(`the export is ${view.status}, not ready to download`);
  const file = exportFilePath(res.dataDir, tenantId, id);
  const s = await stat(file).catch(() => undefined);
  if (!s) throw notFound('export archive');
  await res.db.withTenant(tenantId, (tx) =>
    res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'privacy.export_downloaded',
      targetType: 'export',
      targetId: id,
      details: { sizeBytes: s.size },
    }),
  );
  return { file, fileName: view.fileName, size: s.size };
}

async function setProgress(res: Resources, tenantId: string, id: string, progress: number, stage: string) {
  await res.db.withTenant(
    tenantId,
    (tx) =>
      tx`update privacy_exports set status = 'running', progress = ${Math.min(99, Math.round(progress))}, stage = ${stage}
       where tenant_id = ${tenantId} and id = ${id}`,
  );
}

/** Stream a query's rows into a JSON array file. */
async function writeJsonArray(
  file: string,
  run: (push: (rows: readonly unknown[]) => Promise<void>) => Promise<void>,
): Promise<number> {
  const out: WriteStream = createWriteStream(file);
  let n = 0;
  const write = (s: string) =>
    new Promise<void>((resolve, reject) =>
      out.write(s) ? resolve() : out.once('drain', resolve).once('error', reject),
    );
  await write('[\n');
  await run(async (rows) => {
    for (const r of rows) await write((n++ ? ',\n' : '') + JSON.stringify(r));
  });
  await write('\n]\n');
  await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
  return n;
}

const clean = (row: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(row).filter(([k, v]) => !SECRET_COLUMN.test(k) && !Buffer.isBuffer(v)));

/**
 * The job: build the archive (JSON files per table plus the tenant's vault and inbox files for a
 * tenant export; the person's rows for a user export), tar.gz it, and mark the export done.
 * Restartable: a retried job starts over in a fresh work folder.
 */
export async function runExport(res: Resources, tenantId: string, exportId: string): Promise<void> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<(Row & { slug: string })[]>`
      select e.*, t.slug from privacy_exports e join tenants t on t.id = e.tenant_id
      where e.tenant_id = ${tenantId} and e.id = ${exportId}`,
  );
  if (!row || row.status === 'done') return;
  const dir = exportsDir(res.dataDir, tenantId);
  const work = path.join(dir, `${exportId}.work`);
  await rm(work, { recursive: true, force: true });
  await mkdir(path.join(work, 'data'), { recursive: true, mode: 0o700 });
  try {
    const manifest: Record<string, unknown> = {
      format: 'steward-export/1',
      exportId,
      tenantId,
      scope: row.scope,
      subjectUserId: row.subject_user_id,
      createdAt: new Date().toISOString(),
      tables: {} as Record<string, number>,
      note: 'Secrets (connection passwords, tokens, key material) are never exported.',
    };
    const counts = manifest.tables as Record<string, number>;
    const dump = async (
      name: string,
      query: (tx: Tx, push: (rows: readonly unknown[]) => Promise<void>) => Promise<unknown>,
    ) => {
      counts[name] = await writeJsonArray(path.join(work, 'data', `${name}.json`), async (push) => {
        await res.db.withTenant(tenantId, (tx) => query(tx, push));
      });
    };
    if (row.scope === 'tenant') {
      const tables = (await res.db.withTenant(tenantId, (tx) => tenantTables(tx))).filter(
        (t) => !['tenant_keys', 'privacy_exports'].includes(t.name),
      );
      const steps = tables.length + 4;
      let done = 0;
      for (const t of tables) {
        await setProgress(res, tenantId, exportId, (done++ / steps) * 100, `table ${t.name}`);
        await dump(t.name, (tx, push) =>
          tx`select * from ${tx(t.name)} where tenant_id = ${tenantId}`.cursor(500, (rows) =>
            push(rows.map((r) => clean(r as Record<string, unknown>))),
          ),
        );
      }
      await setProgress(res, tenantId, exportId, (done++ / steps) * 100, 'members');
      await dump('users', async (tx, push) =>
        push(
          await tx`select u.id, u.email, u.name, u.status, u.created_at, u.last_login_at from users u
                   join memberships m on m.user_id = u.id where m.tenant_id = ${tenantId} order by u.email`,
        ),
      );
      await setProgress(res, tenantId, exportId, (done++ / steps) * 100, 'audit log');
      await dump('audit_log', (tx, push) =>
        tx`select * from audit_log where tenant_id = ${tenantId} order by seq`.cursor(1000, (rows) =>
          push(rows),
        ),
      );
      await dump('tenant', async (tx, push) =>
        push(
          await tx`select id, slug, name, status, settings, created_at from tenants where id = ${tenantId}`,
        ),
      );
      await setProgress(res, tenantId, exportId, (done++ / steps) * 100, 'files');
      const tenantDir = path.join(res.dataDir, 'tenants', row.slug);
      for (const sub of ['vault', 'inbox']) {
        await cp(path.join(tenantDir, sub), path.join(work, 'files', sub), { recursive: true }).catch(
          (e: unknown) => {
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          },
        );
      }
    } else {
      const userId = row.subject_user_id!;
      await setProgress(res, tenantId, exportId, 10, 'profile');
      await dump('user', async (tx, push) =>
        push(
          await tx`select id, email, name, status, created_at, last_login_at from users where id = ${userId}`,
        ),
      );
      await dump('memberships', async (tx, push) =>
        push(await tx`select * from memberships where tenant_id = ${tenantId} and user_id = ${userId}`),
      );
      await dump('consents', async (tx, push) =>
        push(
          await tx`select * from consents where tenant_id = ${tenantId} and user_id = ${userId} order by recorded_at`,
        ),
      );
      await dump('api_keys', async (tx, push) =>
        push(
          (await tx`select * from api_keys where tenant_id = ${tenantId} and created_by = ${userId}`).map(
            (r) => clean(r as Record<string, unknown>),
          ),
        ),
      );
      await setProgress(res, tenantId, exportId, 40, 'activity');
      await dump('tasks', async (tx, push) =>
        push(await tx`select * from tasks where tenant_id = ${tenantId} and created_by_id = ${userId}`),
      );
      await dump('audit_log', (tx, push) =>
        tx`select * from audit_log where tenant_id = ${tenantId} and (actor_id = ${userId} or target_id = ${userId})
           order by seq`.cursor(1000, (rows) => push(rows)),
      );
      await setProgress(res, tenantId, exportId, 70, 'sessions');
      const sessions = await res.db.withSystemAccess(
        (tx) =>
          tx`select id, ip, user_agent, created_at, last_used_at, expires_at, revoked_at from sessions
           where user_id = ${userId} and active_tenant_id = ${tenantId}`,
      );
      await writeFile(path.join(work, 'data', 'sessions.json'), JSON.stringify(sessions, null, 1));
      counts.sessions = sessions.length;
    }
    await writeFile(path.join(work, 'manifest.json'), JSON.stringify(manifest, null, 2));
    await setProgress(res, tenantId, exportId, 95, 'archive');
    const final = exportFilePath(res.dataDir, tenantId, exportId);
    const tmp = `${final}.tmp`;
    await tar.create(
      { gzip: true, file: tmp, cwd: work, portable: true },
      ['manifest.json', 'data', ...(row.scope === 'tenant' ? ['files'] : [])].filter(Boolean),
    );
    const hash = createHash('sha256');
    await pipeline(createReadStream(tmp), hash);
    const size = (await stat(tmp)).size;
    await rename(tmp, final);
    const fileName = `steward-export-${row.slug}-${row.scope}-${exportId.slice(0, 8)}.tar.gz`;
    await res.db.withTenant(tenantId, async (tx) => {
      await tx`update privacy_exports set status = 'done', progress = 100, stage = null, file_name = ${fileName},
                 size_bytes = ${size}, sha256 = ${hash.digest('hex')}, finished_at = now(), error = null
               where tenant_id = ${tenantId} and id = ${exportId}`;
      await res.audit.append(tx, tenantId, {
        actorType: 'system',
        actorLabel: 'steward export',
        action: 'privacy.export_completed',
        targetType: 'export',
        targetId: exportId,
        details: { sizeBytes: size, tables: counts },
      });
    });
  } catch (error) {
    await res.db.withTenant(
      tenantId,
      (tx) =>
        tx`update privacy_exports set status = 'failed', error = ${(error as Error).message.slice(0, 500)}, finished_at = now()
         where tenant_id = ${tenantId} and id = ${exportId}`,
    );
    throw error;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

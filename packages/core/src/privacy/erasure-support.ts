import { readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tx } from '@steward/db/database';
import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import type { Resources } from '../resources.ts';
import { redactAudit, scrubString } from './audit-redaction.ts';
import { regexLiteral, tenantTables } from './tenant-tables.ts';

let savepoints = 0;

/** Run `fn` in a savepoint: a failing statement (a CHECK constraint, a unique key) does not abort the erasure. */
export async function attempt(tx: Tx, fn: (sp: Tx) => Promise<unknown>): Promise<boolean> {
  const name = `steward_erasure_${++savepoints}`;
  await tx.unsafe(`savepoint ${name}`);
  try {
    await fn(tx);
    await tx.unsafe(`release savepoint ${name}`);
    return true;
  } catch {
    await tx.unsafe(`rollback to savepoint ${name}`);
    return false;
  }
}

/**
 * Replace every occurrence of the needles in every text and jsonb column of the tenant's rows
 * (tables found in the catalog). A row that cannot take the replacement (a CHECK on a name, no
 * UPDATE privilege) is deleted instead. Returns the rows changed or deleted per table.
 */
export async function scrubTenantRows(
  tx: Tx,
  tenantId: string,
  needles: string[],
  replacement: string,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const usable = needles.filter((n) => n.length >= 3);
  for (const table of await tenantTables(tx)) {
    for (const col of table.textColumns) {
      for (const needle of usable) {
        const like = `%${needle.replace(/[\\%_]/g, '\\$&')}%`;
        const asText = col.type === 'jsonb' ? tx`${tx(col.name)}::text` : tx`${tx(col.name)}`;
        const [hit] = await tx<{ n: number }[]>`
          select count(*)::int as n from ${tx(table.name)} where tenant_id = ${tenantId} and ${asText} ilike ${like}`;
        if (!hit?.n) continue;
        const re = regexLiteral(col.type === 'jsonb' ? JSON.stringify(needle).slice(1, -1) : needle);
        const updated =
          table.canUpdate &&
          (await attempt(tx, (sp) =>
            col.type === 'jsonb'
              ? sp`update ${sp(table.name)} set ${sp(col.name)} = regexp_replace(${sp(col.name)}::text, ${re}, ${replacement}, 'gi')::jsonb
                   where tenant_id = ${tenantId} and ${sp(col.name)}::text ilike ${like}`
              : sp`update ${sp(table.name)} set ${sp(col.name)} = regexp_replace(${sp(col.name)}, ${re}, ${replacement}, 'gi')
                   where tenant_id = ${tenantId} and ${sp(col.name)} ilike ${like}`,
          ));
        if (!updated) {
          const deleted =
            table.canDelete &&
            (await attempt(
              tx,
              (sp) =>
                sp`delete from ${sp(table.name)} where tenant_id = ${tenantId} and ${asText} ilike ${like}`,
            ));
          if (!deleted) throw new Error(`could not erase personal data from ${table.name}.${col.name}`);
        }
        counts[table.name] = (counts[table.name] ?? 0) + hit.n;
      }
    }
  }
  return counts;
}

/** Delete every row of the tenant from every tenant table (several passes for foreign keys). */
export async function deleteTenantRows(
  tx: Tx,
  tenantId: string,
): Promise<{ deleted: Record<string, number>; left: string[] }> {
  const tables = (await tenantTables(tx)).filter((t) => t.canDelete);
  const deleted: Record<string, number> = {};
  let pending = tables.map((t) => t.name);
  for (let pass = 0; pass < 5 && pending.length; pass++) {
    const next: string[] = [];
    for (const name of pending) {
      let n = 0;
      const ok = await attempt(tx, async (sp) => {
        n = (await sp`delete from ${sp(name)} where tenant_id = ${tenantId}`).count;
      });
      if (ok) deleted[name] = (deleted[name] ?? 0) + n;
      else next.push(name);
    }
    pending = next;
  }
  const withoutDelete = (await tenantTables(tx)).filter((t) => !t.canDelete).map((t) => t.name);
  return { deleted, left: [...pending, ...withoutDelete] };
}

/**
 * A user who belongs to no tenant any more: sessions deleted, the identity row anonymised (kept, so
 * audit entries that refer to its id stay consistent), and every tenant's audit chain redacted.
 */
export async function anonymiseIdentity(
  res: Resources,
  user: { id: string; email: string; name: string },
  pseudonym: string,
): Promise<boolean> {
  const done = await res.db.withSystemAccess(
    async (tx) => {
      const [other] = await tx<
        { n: number }[]
      >`select count(*)::int as n from memberships where user_id = ${user.id}`;
      const [row] = await tx<
        { is_platform_admin: boolean }[]
      >`select is_platform_admin from users where id = ${user.id}`;
      if (!row || other!.n > 0 || row.is_platform_admin) {
        return false;
      }
      await tx`delete from refresh_tokens where session_id in (select id from sessions where user_id = ${user.id})`;
      await tx`delete from sessions where user_id = ${user.id}`;
      await tx`update users set email = ${`${pseudonym}@erased.invalid`}, name = '', password_hash = null,
                 status = 'disabled', last_login_at = null, updated_at = now() where id = ${user.id}`;
      await redactAudit(tx, res.master, PLATFORM_TENANT_ID, {
        userId: user.id,
        needles: [user.email, user.name],
        pseudonym,
      });
      return true;
    },
    { tenantId: PLATFORM_TENANT_ID },
  );
  if (!done) return false;
  const tenants = await res.db.withSystemAccess((tx) =>
    tx<{ id: string }[]>`select id from tenants where id <> ${PLATFORM_TENANT_ID}`.then((r) =>
      r.map((t) => t.id),
    ),
  );
  for (const id of tenants) {
    await res.db.withTenant(id, (tx) =>
      redactAudit(tx, res.master, id, { userId: user.id, needles: [user.email, user.name], pseudonym }),
    );
  }
  return true;
}

/** Replace the needles in every text file under `dir` (files that are not UTF-8 and match are deleted). */
export async function scrubFiles(dir: string, needles: string[], replacement: string): Promise<number> {
  const usable = needles.filter((n) => n.length >= 3).map((n) => n.toLowerCase());
  if (!usable.length) return 0;
  let changed = 0;
  const walk = async (d: string): Promise<void> => {
    const entries = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        await walk(p);
        continue;
      }
      if (!e.isFile()) continue;
      const s = await stat(p);
      if (s.size > 50 * 1024 * 1024) continue;
      const buf = await readFile(p);
      const text = buf.toString('utf8');
      const lower = buf.toString('latin1').toLowerCase();
      if (!usable.some((n) => text.toLowerCase().includes(n) || lower.includes(n))) continue;
      if (Buffer.from(text, 'utf8').equals(buf)) await writeFile(p, scrubString(text, needles, replacement));
      else await rm(p, { force: true });
      changed++;
    }
  };
  await walk(dir);
  return changed;
}

/**
 * Tenant isolation, table by table, enforced by the database for the runtime role. The tables come
 * from the catalog and their sample rows are built from the column types, so a table added by a
 * later migration is covered without editing this file (a column type or CHECK the generator cannot
 * satisfy makes the seeding fail with a message saying where to add a sample value).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, createDatabase, type Database, type Queryable, type Sql } from './database.ts';
import { createTestDatabase, runtimeUrl, type TestDatabase } from './testing/test-database.ts';

const A = randomUUID();
const B = randomUUID();
/**
 * Tenant tables that withSystemAccess may READ across tenants (login by email, API key lookup by
 * prefix, the scheduler finding due schedules). Any other tenant table shows nothing without a
 * tenant context.
 */
// Login, API key and SCIM token lookups, the scheduler and the SIEM forwarder read these across tenants.
const SYSTEM_READABLE = ['api_keys', 'memberships', 'schedules', 'scim_tokens', 'siem_destinations'];
/** Sample values for columns whose CHECK constraints the type-based generator cannot meet: table -> column -> value. */
const SAMPLE_OVERRIDES: Record<string, Record<string, () => string>> = {
  // A wrapped data key is 48 bytes (key and tag), an AES-GCM nonce 12 (the string's characters are its bytes).
  tenant_keys: {
    wrapped_key: () => randomBytes(24).toString('hex'),
    nonce: () => randomBytes(6).toString('hex'),
  },
  // An http MCP server needs its url (nullable, so filled in only because it is listed here).
  mcp_servers: { transport: () => 'http', url: () => 'https://mcp.example.com/mcp' },
  // Version 1 of the local key provider is the master-derived key itself: rows start at 2.
  key_ring: { version: () => '2' },
};

let db: TestDatabase;
let url: string;
let raw: Sql;
let app: Database;
let tenantTables: string[];
let allTables: string[];

interface Column {
  name: string;
  type: string;
  typname: string;
  category: string;
  required: boolean;
  /** A single-column `CHECK (col IN (...))` on this column, if there is one. */
  allowed: string | null;
}

const ident = (name: string) => '"' + name.replace(/"/g, '""') + '"';

async function columns(table: string): Promise<Column[]> {
  return db.owner<Column[]>`
    select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, t.typname, t.typcategory as category,
      (a.attnotnull and not a.atthasdef and a.attidentity = '' and a.attgenerated = '') as required,
      (select pg_get_constraintdef(k.oid) from pg_constraint k
       where k.conrelid = a.attrelid and k.contype = 'c' and k.conkey = array[a.attnum]
         and pg_get_constraintdef(k.oid) like '%= ANY (ARRAY[%' limit 1) as allowed
    from pg_attribute a join pg_type t on t.oid = a.atttypid
    where a.attrelid = ${'public.' + ident(table)}::regclass and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
}

function sampleValue(table: string, c: Column): string {
  const override = SAMPLE_OVERRIDES[table]?.[c.name];
  if (override) return override();
  const firstAllowed = c.allowed?.match(/ANY \(ARRAY\['((?:[^']|'')*)'/)?.[1];
  if (firstAllowed !== undefined) return firstAllowed.replace(/''/g, "'");
  if (c.category === 'A') return '{}';
  switch (c.typname) {
    case 'uuid':
      return randomUUID();
    case 'text':
    case 'varchar':
    case 'bpchar':
    case 'citext':
      return 'v' + randomBytes(5).toString('hex');
    case 'int2':
    case 'int4':
    case 'int8':
    case 'numeric':
      return '1';
    case 'bool':
      return 'false';
    case 'bytea':
      return '\\x' + randomBytes(16).toString('hex');
    case 'json':
    case 'jsonb':
      return '{}';
    case 'timestamptz':
    case 'timestamp':
    case 'date':
      return new Date().toISOString();
    case 'inet':
      return '127.0.0.1';
  }
  throw new Error(
    `tenant-isolation.test.ts: no sample value for ${table}.${c.name} (${c.type}); add one to SAMPLE_OVERRIDES`,
  );
}

/** One row with every required column filled in (foreign keys are not checked: replication role replica). */
async function insertSample(tx: Sql, table: string, fixed: Record<string, string>): Promise<void> {
  const values: Record<string, string> = {};
  const types: Record<string, string> = {};
  for (const c of await columns(table)) {
    types[c.name] = c.type;
    if (c.name in fixed) values[c.name] = fixed[c.name]!;
    else if (c.required || SAMPLE_OVERRIDES[table]?.[c.name]) values[c.name] = sampleValue(table, c);
  }
  const names = Object.keys(values);
  const sql = `insert into ${ident(table)} (${names.map(ident).join(', ')})
               values (${names.map((n, i) => `$${i + 1}::${types[n]}`).join(', ')})`;
  try {
    await tx.unsafe(sql, Object.values(values));
  } catch (error) {
    throw new Error(
      `tenant-isolation.test.ts: could not seed ${table} (${(error as Error).message}); add sample values to SAMPLE_OVERRIDES`,
      { cause: error },
    );
  }
}

/** The row a test running as the runtime tries to slip into `table` (same generator, given tenant). */
async function sampleInsert(tx: Queryable, table: string, tenantId: string): Promise<unknown> {
  const values: Record<string, string> = {};
  const types: Record<string, string> = {};
  for (const c of await columns(table)) {
    types[c.name] = c.type;
    if (c.name === 'tenant_id') values[c.name] = tenantId;
    else if (c.required || SAMPLE_OVERRIDES[table]?.[c.name]) values[c.name] = sampleValue(table, c);
  }
  const names = Object.keys(values);
  return tx.unsafe(
    `insert into ${ident(table)} (${names.map(ident).join(', ')})
     values (${names.map((n, i) => `$${i + 1}::${types[n]}`).join(', ')})`,
    Object.values(values),
  );
}

async function ownerCount(table: string, tenantId?: string): Promise<number> {
  const [row] = await db.owner.unsafe<{ n: string }[]>(
    `select count(*) as n from ${ident(table)}${tenantId ? ' where tenant_id = $1' : ''}`,
    tenantId ? [tenantId] : [],
  );
  return Number(row!.n);
}

async function pgError(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; message: string },
  );
  if (!error) throw new Error('expected the statement to fail, but it succeeded');
  return error;
}

beforeAll(async () => {
  db = await createTestDatabase();
  url = await runtimeUrl(db);
  raw = connect(url, { max: 1 });
  app = createDatabase({ url, max: 2 });
  const tables = await db.owner<{ name: string; has_tenant_id: boolean }[]>`
    select t.table_name as name,
      exists (select 1 from information_schema.columns c
              where c.table_schema = 'public' and c.table_name = t.table_name and c.column_name = 'tenant_id') as has_tenant_id
    from information_schema.tables t
    where t.table_schema = 'public' and t.table_type = 'BASE TABLE' and t.table_name <> 'schema_migrations'
    order by 1`;
  tenantTables = tables.filter((t) => t.has_tenant_id).map((t) => t.name);
  allTables = tables.map((t) => t.name);

  await db.owner`insert into tenants (id, slug, name) values (${A}, 'tenant-a', 'A'), (${B}, 'tenant-b', 'B')`;
  await db.owner.begin(async (tx) => {
    await tx`set local session_replication_role = replica`;
    for (const table of allTables) {
      if (table === 'tenants') continue;
      if (tenantTables.includes(table)) {
        await insertSample(tx as unknown as Sql, table, { tenant_id: A });
        await insertSample(tx as unknown as Sql, table, { tenant_id: B });
      } else {
        await insertSample(tx as unknown as Sql, table, {});
      }
    }
  });
});

afterAll(async () => {
  await raw?.end();
  await app?.close();
  await db?.drop();
});

it('finds the tenant tables in the catalog and seeds each for two tenants', async () => {
  expect(tenantTables).toEqual(
    expect.arrayContaining(['api_keys', 'audit_heads', 'audit_log', 'memberships', 'roles']),
  );
  for (const table of tenantTables) {
    expect(await ownerCount(table, A), table).toBe(1);
    expect(await ownerCount(table, B), table).toBe(1);
  }
});

describe('withTenant(A)', () => {
  it('sees only A’s rows in every tenant table', async () => {
    for (const table of tenantTables) {
      const rows = await app.withTenant(A, (tx) =>
        tx.unsafe<{ tenant_id: string }[]>(`select tenant_id from ${ident(table)}`),
      );
      expect(
        rows.map((r) => r.tenant_id),
        table,
      ).toEqual([A]);
    }
  });

  it('sees only A in the tenants registry', async () => {
    const rows = await app.withTenant(A, (tx) => tx<{ id: string }[]>`select id from tenants`);
    expect(rows.map((r) => r.id)).toEqual([A]);
  });

  it('cannot insert a row carrying B’s tenant_id into any tenant table', async () => {
    for (const table of tenantTables) {
      const e = await pgError(app.withTenant(A, (tx) => sampleInsert(tx, table, B)));
      expect(e.code, `${table}: ${e.message}`).toBe('42501');
      expect(await ownerCount(table, B), table).toBe(1);
    }
  });

  it('cannot change or delete B’s rows, nor move its own rows to B', async () => {
    for (const table of tenantTables) {
      const updated = await app
        .withTenant(A, (tx) =>
          tx.unsafe(`update ${ident(table)} set tenant_id = tenant_id where tenant_id = $1 returning 1`, [B]),
        )
        .then(
          (rows) => rows.length,
          (e: { code?: string }) => e.code,
        );
      expect([0, '42501'], `update in ${table}`).toContain(updated);
      const deleted = await app
        .withTenant(A, (tx) => tx.unsafe(`delete from ${ident(table)} where tenant_id = $1 returning 1`, [B]))
        .then(
          (rows) => rows.length,
          (e: { code?: string }) => e.code,
        );
      expect([0, '42501'], `delete in ${table}`).toContain(deleted);
      const moved = await pgError(
        app.withTenant(A, (tx) => tx.unsafe(`update ${ident(table)} set tenant_id = $1`, [B])),
      );
      expect(moved.code, `move in ${table}: ${moved.message}`).toBe('42501');
      expect(await ownerCount(table, A), table).toBe(1);
      expect(await ownerCount(table, B), table).toBe(1);
    }
  });
});

describe('without a tenant context', () => {
  it('a runtime connection that never set one sees no row of any table', async () => {
    for (const table of allTables) {
      expect(await ownerCount(table), `${table} is seeded`).toBeGreaterThan(0);
      const [row] = await raw.unsafe<{ n: string }[]>(`select count(*) as n from ${ident(table)}`);
      expect(Number(row!.n), table).toBe(0);
    }
  });

  it('withSystemAccess sees no tenant row, except reading the tables login and key lookup need', async () => {
    for (const table of tenantTables) {
      const rows = await app.withSystemAccess((tx) =>
        tx.unsafe<{ tenant_id: string }[]>(`select tenant_id from ${ident(table)} order by tenant_id`),
      );
      const seen = rows.map((r) => r.tenant_id);
      if (SYSTEM_READABLE.includes(table)) expect(seen, table).toEqual([A, B].sort());
      else expect(seen, table).toEqual([]);
    }
  });

  it('withSystemAccess cannot write any tenant table', async () => {
    for (const table of tenantTables) {
      const e = await pgError(app.withSystemAccess((tx) => sampleInsert(tx, table, A)));
      expect(e.code, `${table}: ${e.message}`).toBe('42501');
      const updated = await app
        .withSystemAccess((tx) => tx.unsafe(`update ${ident(table)} set tenant_id = tenant_id returning 1`))
        .then(
          (rows) => rows.length,
          (error: { code?: string }) => error.code,
        );
      expect([0, '42501'], table).toContain(updated);
    }
  });
});

describe('the tenant setting on a pooled connection', () => {
  it('does not outlive the transaction: the next query on the same connection sees no tenant', async () => {
    const pool = connect(url, { max: 1 });
    const single = createDatabase({ url, max: 1, pool });
    try {
      const inside = await single.withTenant(
        A,
        async (tx) => {
          const [row] = await tx<{ tenant: string; user: string; pid: number }[]>`
            select current_setting('app.tenant_id', true) as tenant, current_setting('app.user_id', true) as user,
                   pg_backend_pid() as pid`;
          return row!;
        },
        { userId: B },
      );
      expect(inside.tenant).toBe(A);
      expect(inside.user).toBe(B);

      const after = async () => {
        const [row] = await pool<
          { tenant: string | null; user: string | null; system: string | null; pid: number; roles: string }[]
        >`
          select current_setting('app.tenant_id', true) as tenant, current_setting('app.user_id', true) as user,
                 current_setting('app.system', true) as system, pg_backend_pid() as pid,
                 (select count(*) from roles) as roles`;
        return row!;
      };
      const next = await after();
      expect(next.pid).toBe(inside.pid);
      expect(next.tenant ?? '').toBe('');
      expect(next.user ?? '').toBe('');
      expect(Number(next.roles)).toBe(0);

      // Nor after a transaction that failed half-way, nor after system access.
      await expect(
        single.withTenant(A, async (tx) => {
          await tx`select 1`;
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect((await after()).tenant ?? '').toBe('');
      await single.withSystemAccess((tx) => tx`select 1`, { tenantId: A });
      const afterSystem = await after();
      expect(afterSystem.pid).toBe(inside.pid);
      expect(afterSystem.tenant ?? '').toBe('');
      expect(afterSystem.system ?? '').toBe('');
    } finally {
      await single.close();
    }
  });

  it('interleaved transactions of two tenants on a small pool each see only their own rows', async () => {
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => {
        const tenant = i % 2 ? A : B;
        return app
          .withTenant(tenant, (tx) => tx<{ tenant_id: string }[]>`select tenant_id from roles`)
          .then((rows) => ({ tenant, seen: rows.map((r) => r.tenant_id) }));
      }),
    );
    const wrong = results.filter((r) => r.seen.length !== 1 || r.seen[0] !== r.tenant);
    expect(wrong).toEqual([]);
  });

  it('withTenant refuses anything but a uuid', async () => {
    for (const bad of ['', 'tenant-a', `${A}' or true --`]) {
      await expect(app.withTenant(bad, (tx) => tx`select 1`)).rejects.toThrow(TypeError);
    }
  });

  it('readTenant (one statement, one round trip) sees only its tenant, refuses writes and leaves nothing behind', async () => {
    for (const table of tenantTables) {
      const rows = await app.readTenant(A, (tx) =>
        tx.unsafe<{ tenant_id: string }[]>(`select tenant_id from ${ident(table)}`),
      );
      expect(
        rows.map((r) => r.tenant_id),
        table,
      ).toEqual([A]);
    }
    const pool = connect(url, { max: 1 });
    const single = createDatabase({ url, max: 1, pool });
    try {
      // The pooled connection after a readTenant: no tenant, no transaction left open.
      const after = async () => {
        const [row] = await pool<{ tenant: string | null; pid: number; roles: string }[]>`
          select current_setting('app.tenant_id', true) as tenant, pg_backend_pid() as pid,
                 (select count(*) from roles) as roles`;
        const [activity] = await db.owner<{ xact: Date | null }[]>`
          select xact_start as xact from pg_stat_activity where pid = ${row!.pid}`;
        return { tenant: row!.tenant, open: activity!.xact !== null, roles: row!.roles };
      };
      const [inside] = await single.readTenant(
        B,
        (tx) => tx<{ tenant: string; user: string; readOnly: string }[]>`
          select current_setting('app.tenant_id', true) as tenant, current_setting('app.user_id', true) as user,
                 current_setting('transaction_read_only') as "readOnly"`,
        { userId: A },
      );
      expect(inside).toEqual({ tenant: B, user: A, readOnly: 'on' });
      expect(await after()).toEqual({ tenant: '', open: false, roles: '0' });

      // A write is refused (read-only transaction) and nothing is committed.
      const write = await pgError(
        single.readTenant(B, (tx) => tx`update roles set description = 'changed' returning 1`),
      );
      expect(write.code).toBe('25006');
      expect(await after()).toEqual({ tenant: '', open: false, roles: '0' });
      const [role] = await db.owner<
        { description: string }[]
      >`select description from roles where tenant_id = ${B}`;
      expect(role!.description).not.toBe('changed');

      // A failing statement: the error reaches the caller, the connection is clean and usable.
      const failed = await pgError(single.readTenant(A, (tx) => tx`select 1 / 0`));
      expect(failed.code).toBe('22012');
      expect(await after()).toEqual({ tenant: '', open: false, roles: '0' });
      const [again] = await single.readTenant(
        A,
        (tx) => tx<{ n: string }[]>`select count(*) as n from roles`,
      );
      expect(again!.n).toBe('1');

      await expect(single.readTenant('not-a-uuid', (tx) => tx`select 1`)).rejects.toThrow(TypeError);
    } finally {
      await single.close();
    }
  });
});

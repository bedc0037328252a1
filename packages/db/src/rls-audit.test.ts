/**
 * The database audit: the schema itself must enforce tenant isolation, whatever the application
 * code does. Every check reads the catalogs, so a table, function or view added by a later
 * migration is audited without touching this file; the "audit catches" tests prove each check
 * fails on a bad object (created in a transaction that is rolled back).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Sql } from './database.ts';
import { APP_GROUP_ROLE, checkRuntimeRole, RUNTIME_ROLE } from './runtime-role.ts';
import { createTestDatabase, runtimeUrl, type TestDatabase } from './testing/test-database.ts';

/** Tables without RLS on purpose: the migration ledger (no tenant data; the runtime may only read it). */
const RLS_EXEMPT = ['schema_migrations'];
/** Schemas besides public whose tables the runtime role may use, each with the reason it needs no RLS. */
const OTHER_SCHEMAS_ALLOWED: Record<string, string> = {
  graphile_worker:
    'the job queue (packages/db/src/job-queue-schema.ts): jobs carry ids only, never tenant data',
};

let db: TestDatabase;
let runtime: Sql;

beforeAll(async () => {
  db = await createTestDatabase();
  runtime = connect(await runtimeUrl(db), { max: 2 });
});
afterAll(async () => {
  await runtime?.end();
  await db?.drop();
});

interface TableRow {
  name: string;
  enabled: boolean;
  forced: boolean;
  has_tenant_id: boolean;
  first_pk_column: string | null;
}

async function publicTables(sql: Sql): Promise<TableRow[]> {
  return sql<TableRow[]>`
    select c.relname as name, c.relrowsecurity as enabled, c.relforcerowsecurity as forced,
      exists (select 1 from pg_attribute a
              where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped) as has_tenant_id,
      (select a.attname from pg_index i
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
       where i.indrelid = c.oid and i.indisprimary) as first_pk_column
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public' and c.relkind in ('r', 'p')
    order by c.relname`;
}

/** Tables in schema public whose RLS is missing or not forced. */
async function rlsProblems(sql: Sql): Promise<string[]> {
  const problems: string[] = [];
  for (const t of await publicTables(sql)) {
    if (RLS_EXEMPT.includes(t.name)) continue;
    const kind = t.has_tenant_id ? 'tenant table' : 'table';
    if (!t.enabled) problems.push(`${kind} ${t.name}: row-level security is not enabled`);
    if (!t.forced) problems.push(`${kind} ${t.name}: row-level security is not forced`);
  }
  return problems;
}

const COMMANDS = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'] as const;
const refersToTenantSetting = (expr: string | null) =>
  !!expr && /\btenant_id\b/.test(expr) && /app\.tenant_id|app_tenant_id\(\)/.test(expr);

/**
 * Every tenant table needs, for each command, a RESTRICTIVE policy for every role that compares
 * tenant_id with app.tenant_id on the rows it reads and on the rows it writes.
 */
async function policyProblems(sql: Sql): Promise<string[]> {
  const problems: string[] = [];
  const policies = await sql<
    {
      tablename: string;
      permissive: string;
      roles: string[];
      cmd: string;
      qual: string | null;
      with_check: string | null;
    }[]
  >`select tablename, permissive, roles::text[] as roles, cmd, qual, with_check
    from pg_policies where schemaname = 'public'`;
  for (const t of await publicTables(sql)) {
    if (!t.has_tenant_id) continue;
    if (t.first_pk_column !== 'tenant_id') {
      problems.push(`tenant table ${t.name}: the primary key does not start with tenant_id`);
    }
    for (const cmd of COMMANDS) {
      const guarded = policies.some((p) => {
        if (p.tablename !== t.name || p.permissive !== 'RESTRICTIVE') return false;
        if (p.cmd !== 'ALL' && p.cmd !== cmd) return false;
        if (!(p.roles.length === 1 && p.roles[0] === 'public')) return false;
        const reads = refersToTenantSetting(p.qual);
        const writes = refersToTenantSetting(p.with_check ?? p.qual);
        if (cmd === 'SELECT' || cmd === 'DELETE') return reads;
        if (cmd === 'INSERT') return writes;
        return reads && writes;
      });
      if (!guarded) problems.push(`tenant table ${t.name}: no restrictive app.tenant_id policy for ${cmd}`);
    }
  }
  return problems;
}

/**
 * Policies must read the transaction's context once per statement: `(SELECT app_tenant_id())`
 * (an InitPlan), not `app_tenant_id()` or `current_setting('app.tenant_id')`, which PostgreSQL
 * evaluates for every row it looks at (migration 0020 rewrote the policies that existed then).
 */
async function perRowContextProblems(sql: Sql): Promise<string[]> {
  const policies = await sql<{ tablename: string; policyname: string; expr: string }[]>`
    select tablename, policyname, coalesce(qual, '') || ' ' || coalesce(with_check, '') as expr
    from pg_policies where schemaname = 'public' order by tablename, policyname`;
  return policies
    .filter((p) => {
      const rest = p.expr.replace(/\( SELECT (app_\w+)\(\) AS \1\)/g, '');
      return /current_setting\(/.test(rest) || /\bapp_(tenant_id|user_id|is_system)\(\)/.test(rest);
    })
    .map((p) => `policy ${p.policyname} on ${p.tablename} reads the context per row`);
}

async function securityDefinerFunctions(sql: Sql): Promise<string[]> {
  const rows = await sql<{ fn: string }[]>`
    select p.oid::regprocedure::text as fn from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where p.prosecdef and n.nspname not in ('pg_catalog', 'information_schema')`;
  return rows.map((r) => r.fn);
}

/**
 * Views run with their owner's rights unless security_invoker is on, so a view that reads (directly
 * or through other views) a table with RLS would bypass it (the allowed schemas' own views aside); a materialized view is a snapshot taken
 * as its owner, so the runtime must not be able to read one built on such a table.
 */
async function viewProblems(sql: Sql): Promise<string[]> {
  const rows = await sql<
    { name: string; relkind: string; invoker: boolean; readable: boolean; reads_rls: boolean }[]
  >`
    with recursive views as (
      select c.oid, c.oid::regclass::text as name, c.relkind,
        coalesce((select lower(option_value) in ('true', 'on', '1', 'yes')
                  from pg_options_to_table(c.reloptions) where option_name = 'security_invoker'), false) as invoker,
        has_table_privilege(${RUNTIME_ROLE}, c.oid, 'SELECT') as readable
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where c.relkind in ('v', 'm') and n.nspname not in ('pg_catalog', 'information_schema')
        and n.nspname not like 'pg\\_%'
    ), deps as (
      select distinct r.ev_class as view_oid, d.refobjid as rel_oid
      from pg_rewrite r
      join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = r.oid
        and d.refclassid = 'pg_class'::regclass and d.refobjid <> r.ev_class
    ), reach as (
      select view_oid, rel_oid from deps
      union
      select reach.view_oid, deps.rel_oid from reach join deps on deps.view_oid = reach.rel_oid
    )
    select v.name, v.relkind, v.invoker, v.readable,
      exists (select 1 from reach join pg_class t on t.oid = reach.rel_oid
              where reach.view_oid = v.oid and t.relrowsecurity
                and t.relnamespace::regnamespace::text <> all(${Object.keys(OTHER_SCHEMAS_ALLOWED)}::text[])) as reads_rls
    from views v
    order by 1`;
  const problems: string[] = [];
  for (const v of rows) {
    if (!v.reads_rls) continue;
    if (v.relkind === 'v' && !v.invoker)
      problems.push(`view ${v.name} reads RLS tables but is not security_invoker`);
    if (v.relkind === 'm' && v.readable)
      problems.push(`materialized view ${v.name} of RLS tables is readable by the runtime`);
  }
  return problems;
}

/** Relations outside schema public that the runtime role can use. */
async function otherSchemaTables(sql: Sql): Promise<string[]> {
  const rows = await sql<{ name: string }[]>`
    select n.nspname || '.' || c.relname as name
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.relkind in ('r', 'p', 'v', 'm', 'f')
      and n.nspname not in ('public', 'pg_catalog', 'information_schema') and n.nspname not like 'pg\\_%'
      and has_schema_privilege(${RUNTIME_ROLE}, n.oid, 'USAGE')
      and (has_table_privilege(${RUNTIME_ROLE}, c.oid, 'SELECT') or has_table_privilege(${RUNTIME_ROLE}, c.oid, 'INSERT')
        or has_any_column_privilege(${RUNTIME_ROLE}, c.oid, 'UPDATE') or has_table_privilege(${RUNTIME_ROLE}, c.oid, 'DELETE'))
    order by 1`;
  return rows.map((r) => r.name).filter((n) => !Object.hasOwn(OTHER_SCHEMAS_ALLOWED, n.split('.')[0]!));
}

/** Run `fn` as the owner in a transaction that is always rolled back. */
async function inRolledBackTransaction(fn: (tx: Sql) => Promise<void>): Promise<void> {
  const rollback = new Error('rollback');
  await db.owner
    .begin(async (tx) => {
      await fn(tx as unknown as Sql);
      throw rollback;
    })
    .catch((error: unknown) => {
      if (error !== rollback) throw error;
    });
}

async function pgError(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e as { code?: string; message: string },
  );
  if (!error) throw new Error('expected the statement to fail, but it succeeded');
  return error;
}

describe('row-level security', () => {
  it('audits the tenant tables of the foundation (the catalog query finds them)', async () => {
    const tables = await publicTables(db.owner);
    const tenantTables = tables.filter((t) => t.has_tenant_id).map((t) => t.name);
    expect(tenantTables).toEqual(
      expect.arrayContaining(['api_keys', 'audit_heads', 'audit_log', 'memberships', 'roles']),
    );
    expect(tables.map((t) => t.name)).toEqual(
      expect.arrayContaining(['tenants', 'users', 'sessions', 'refresh_tokens']),
    );
  });

  it('is enabled and forced on every table of schema public (schema_migrations aside)', async () => {
    expect(await rlsProblems(db.owner)).toEqual([]);
  });

  it('every tenant table is keyed by tenant_id first and has a restrictive app.tenant_id policy per command', async () => {
    expect(await policyProblems(db.owner)).toEqual([]);
  });

  it('every policy reads app.tenant_id, app.user_id and app.system once per statement', async () => {
    expect(await perRowContextProblems(db.owner)).toEqual([]);
  });

  it('schema_migrations, the one table without RLS, is read-only for the runtime', async () => {
    const [row] = await runtime<{ n: string }[]>`select count(*) as n from schema_migrations`;
    expect(Number(row!.n)).toBeGreaterThan(0);
    const e = await pgError(
      runtime`insert into schema_migrations (version, name, checksum) values (9999, 'x', 'x')`,
    );
    expect(e.code).toBe('42501');
  });

  it('no table outside schema public is reachable by the runtime role', async () => {
    expect(await otherSchemaTables(db.owner)).toEqual([]);
  });
});

describe('functions and views', () => {
  it('no SECURITY DEFINER function exists outside the system schemas', async () => {
    expect(await securityDefinerFunctions(db.owner)).toEqual([]);
  });

  it('every view over RLS tables is security_invoker; no materialized view of them is readable', async () => {
    expect(await viewProblems(db.owner)).toEqual([]);
  });
});

describe('the audit catches what a later migration could get wrong', () => {
  it('a tenant table without RLS, or with RLS but without a restrictive tenant policy', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx`create table later_things (tenant_id uuid not null, id uuid not null, primary key (tenant_id, id))`;
      expect(await rlsProblems(tx)).toEqual([
        'tenant table later_things: row-level security is not enabled',
        'tenant table later_things: row-level security is not forced',
      ]);
      await tx`alter table later_things enable row level security`;
      await tx`alter table later_things force row level security`;
      expect(await rlsProblems(tx)).toEqual([]);
      // A permissive policy alone is not isolation: any other permissive policy would widen it.
      await tx.unsafe(`create policy p on later_things using (tenant_id = app_tenant_id())`);
      expect(await policyProblems(tx)).toEqual(
        COMMANDS.map((c) => `tenant table later_things: no restrictive app.tenant_id policy for ${c}`),
      );
      // Restrictive, but on reads only: writes are still unguarded.
      await tx.unsafe(
        `create policy r on later_things as restrictive for select using (tenant_id = app_tenant_id())`,
      );
      expect(await policyProblems(tx)).toEqual(
        ['INSERT', 'UPDATE', 'DELETE'].map(
          (c) => `tenant table later_things: no restrictive app.tenant_id policy for ${c}`,
        ),
      );
      await tx.unsafe(
        `create policy w on later_things as restrictive for all using (tenant_id = app_tenant_id())`,
      );
      expect(await policyProblems(tx)).toEqual([]);
    });
  });

  it('a policy that reads the context per row instead of once per statement', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx`create table later_rows (tenant_id uuid not null, id uuid not null, primary key (tenant_id, id))`;
      await tx.unsafe(
        `create policy once on later_rows as restrictive for select using (tenant_id = (select app_tenant_id()))`,
      );
      expect(await perRowContextProblems(tx)).toEqual([]);
      await tx.unsafe(
        `create policy per_call on later_rows as restrictive for insert with check (tenant_id = app_tenant_id())`,
      );
      await tx.unsafe(
        `create policy per_setting on later_rows as restrictive for update ` +
          `using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)`,
      );
      await tx.unsafe(
        `create policy per_user on later_rows as restrictive for delete using ((select app_is_system()) or id = app_user_id())`,
      );
      expect(await perRowContextProblems(tx)).toEqual([
        'policy per_call on later_rows reads the context per row',
        'policy per_setting on later_rows reads the context per row',
        'policy per_user on later_rows reads the context per row',
      ]);
    });
  });

  it('a restrictive policy that applies to some roles only, and a primary key not led by tenant_id', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx`create table later_items (id uuid primary key, tenant_id uuid not null)`;
      await tx`alter table later_items enable row level security`;
      await tx`alter table later_items force row level security`;
      await tx.unsafe(
        `create policy r on later_items as restrictive for all to ${APP_GROUP_ROLE} using (tenant_id = app_tenant_id())`,
      );
      const problems = await policyProblems(tx);
      expect(problems).toContain('tenant table later_items: the primary key does not start with tenant_id');
      expect(problems).toContain('tenant table later_items: no restrictive app.tenant_id policy for SELECT');
    });
  });

  it('a global table without RLS', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx`create table later_settings (id int primary key)`;
      await tx`alter table later_settings enable row level security`;
      expect(await rlsProblems(tx)).toEqual(['table later_settings: row-level security is not forced']);
    });
  });

  it('a SECURITY DEFINER function, in any schema', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx.unsafe(`create schema later_schema`);
      await tx.unsafe(
        `create function later_schema.all_roles() returns bigint language sql security definer as 'select count(*) from public.roles'`,
      );
      expect(await securityDefinerFunctions(tx)).toEqual(['later_schema.all_roles()']);
    });
  });

  it('a view that runs as its owner over an RLS table (directly or through a view), and a readable materialized view', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx`create view later_roles as select * from roles`;
      await tx`create view later_roles_invoker with (security_invoker = true) as select * from roles`;
      await tx`create view later_roles_wrapped as select * from later_roles_invoker`;
      await tx`create view later_versions as select version from schema_migrations`;
      await tx`create materialized view later_snapshot as select tenant_id, count(*) from roles group by 1`;
      await tx`create materialized view later_private_snapshot as select tenant_id, count(*) from roles group by 1`;
      await tx.unsafe(`grant select on later_snapshot to ${APP_GROUP_ROLE}`);
      expect(await viewProblems(tx)).toEqual([
        'view later_roles reads RLS tables but is not security_invoker',
        'view later_roles_wrapped reads RLS tables but is not security_invoker',
        'materialized view later_snapshot of RLS tables is readable by the runtime',
      ]);
    });
  });

  it('a table in another schema granted to the runtime', async () => {
    await inRolledBackTransaction(async (tx) => {
      await tx.unsafe(`create schema later_queue`);
      await tx.unsafe(`create table later_queue.jobs (id int)`);
      await tx.unsafe(`grant usage on schema later_queue to ${APP_GROUP_ROLE}`);
      expect(await otherSchemaTables(tx)).toEqual([]);
      await tx.unsafe(`grant select on later_queue.jobs to ${APP_GROUP_ROLE}`);
      expect(await otherSchemaTables(tx)).toEqual(['later_queue.jobs']);
    });
  });
});

describe('the runtime role', () => {
  it('is the role we connect as, and the safety check finds no problem', async () => {
    const [who] = await runtime<{ current_user: string; session_user: string }[]>`
      select current_user, session_user`;
    expect(who).toEqual({ current_user: RUNTIME_ROLE, session_user: RUNTIME_ROLE });
    expect(await checkRuntimeRole(runtime)).toEqual({ role: RUNTIME_ROLE, problems: [] });
  });

  it('is not a superuser, has no BYPASSRLS, and can become no role that is or has', async () => {
    const roles = await runtime<
      {
        rolname: string;
        rolsuper: boolean;
        rolbypassrls: boolean;
        rolcreaterole: boolean;
        rolcreatedb: boolean;
      }[]
    >`select rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb from pg_roles
      where pg_has_role(current_user, oid, 'MEMBER') order by rolname`;
    expect(roles.map((r) => r.rolname)).toEqual([APP_GROUP_ROLE, RUNTIME_ROLE].sort());
    for (const r of roles) {
      expect(r, r.rolname).toMatchObject({
        rolsuper: false,
        rolbypassrls: false,
        rolcreaterole: false,
        rolcreatedb: false,
      });
    }
  });

  it('owns nothing in the database, directly or through a role it belongs to', async () => {
    const owned = await runtime<{ kind: string; name: string }[]>`
      select 'relation' as kind, c.oid::regclass::text as name from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname not in ('pg_catalog', 'information_schema') and pg_has_role(current_user, c.relowner, 'MEMBER')
      union all
      select 'function', p.oid::regprocedure::text from pg_proc p
        join pg_namespace n on n.oid = p.pronamespace
        where n.nspname not in ('pg_catalog', 'information_schema') and pg_has_role(current_user, p.proowner, 'MEMBER')
      union all
      select 'schema', n.nspname::text from pg_namespace n where pg_has_role(current_user, n.nspowner, 'MEMBER')
      union all
      select 'database', d.datname::text from pg_database d
        where d.datname = current_database() and pg_has_role(current_user, d.datdba, 'MEMBER')`;
    expect(owned).toEqual([]);
  });

  it('cannot create objects, turn RLS off, or read past it with row_security = off', async () => {
    expect((await pgError(runtime`create table runtime_owned (id int)`)).code).toBe('42501');
    expect((await pgError(runtime`alter table roles disable row level security`)).code).toBe('42501');
    expect((await pgError(runtime`alter table roles no force row level security`)).code).toBe('42501');
    expect((await pgError(runtime`drop policy roles_tenant_isolation on roles`)).code).toBe('42501');
    const e = await pgError(
      runtime.begin(async (tx) => {
        await tx`set local row_security = off`;
        await tx`select * from roles`;
      }),
    );
    expect(e.code).toBe('42501');
    expect(e.message).toMatch(/row-level security/);
  });

  it('holds no TRUNCATE or TRIGGER privilege on any table', async () => {
    const rows = await runtime<{ name: string }[]>`
      select c.relname as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = 'public' and c.relkind in ('r', 'p')
        and (has_table_privilege(current_user, c.oid, 'TRUNCATE') or has_table_privilege(current_user, c.oid, 'TRIGGER'))`;
    expect(rows).toEqual([]);
  });

  describe('and the audit log', () => {
    const tenantId = '11111111-1111-4111-8111-111111111111';

    beforeAll(async () => {
      await db.owner`insert into tenants (id, slug, name) values (${tenantId}, 'audited', 'Audited')`;
      await db.owner`insert into audit_log (tenant_id, seq, at, actor_type, action, prev_hash, hash)
                     values (${tenantId}, 1, now(), 'system', 'test.entry', ${'0'.repeat(64)}, ${'1'.repeat(64)})`;
      await db.owner`insert into audit_heads (tenant_id, seq, hash) values (${tenantId}, 1, ${'1'.repeat(64)})`;
    });

    /** A statement in a transaction scoped to the tenant, the way withTenant runs it. */
    const asTenant = (statement: string) =>
      runtime.begin(async (tx) => {
        await tx`select set_config('app.tenant_id', ${tenantId}, true)`;
        return tx.unsafe(statement);
      });

    it('may read its own tenant’s entries', async () => {
      const rows = await asTenant(`select seq from audit_log`);
      expect(rows.map((r) => Number(r.seq))).toEqual([1]);
    });

    it('cannot UPDATE, DELETE or TRUNCATE audit_log, not even one column', async () => {
      const attempts = [
        `update audit_log set action = 'rewritten' where seq = 1`,
        `update audit_log set hash = hash`,
        `delete from audit_log where seq = 1`,
        `truncate audit_log`,
      ];
      for (const statement of attempts) {
        const e = await pgError(asTenant(statement));
        expect(e.code, statement).toBe('42501');
        expect(e.message, statement).toMatch(/permission denied/);
      }
      const [row] = await db.owner<
        { action: string }[]
      >`select action from audit_log where tenant_id = ${tenantId}`;
      expect(row).toEqual({ action: 'test.entry' });
    });

    it('may only redact entries (GDPR erasure, 0012): personal columns, with a redaction MAC, never the chain fields', async () => {
      // The column-level UPDATE grant on the personal fields (which also allows SELECT ... FOR UPDATE)
      // is held back by a trigger: an update that is not a redaction is refused.
      const e = await pgError(asTenant(`update audit_log set details = '{}'::jsonb where seq = 1`));
      expect(e.message).toMatch(/only be redacted/);
      const cleared = await pgError(
        asTenant(`update audit_log set redacted_at = null, redaction_mac = null where seq = 1`),
      );
      expect(cleared.message).toMatch(/only be redacted/);
      const [row] = await db.owner<
        { action: string; redacted_at: Date | null }[]
      >`select action, redacted_at from audit_log where tenant_id = ${tenantId}`;
      expect(row).toEqual({ action: 'test.entry', redacted_at: null });
    });

    it('cannot DELETE or TRUNCATE the chain heads', async () => {
      for (const statement of [`delete from audit_heads`, `truncate audit_heads`]) {
        expect((await pgError(asTenant(statement))).code, statement).toBe('42501');
      }
    });
  });
});

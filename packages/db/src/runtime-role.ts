import type { Queryable, Sql } from './database.ts';

export const RUNTIME_ROLE = 'steward_runtime';
export const APP_GROUP_ROLE = 'steward_app';

/**
 * Create (or update) Steward's own runtime login role: a member of the steward_app group role,
 * never a superuser, never BYPASSRLS, owning nothing. Returns the runtime connection URL,
 * which is the owner URL with this role's credentials.
 */
export async function ensureRuntimeRole(owner: Sql, ownerUrl: string, password: string): Promise<string> {
  // Roles are shared by every database of a cluster; two databases setting it up at the same moment
  // can collide ("tuple concurrently updated"), so retry a few times.
  for (let attempt = 1; ; attempt++) {
    try {
      await setUpRole(owner, password);
      break;
    } catch (error) {
      if (attempt >= 5) throw error;
      await new Promise((r) => setTimeout(r, 50 * attempt));
    }
  }
  const url = new URL(ownerUrl);
  url.username = RUNTIME_ROLE;
  url.password = password;
  return url.toString();
}

async function setUpRole(owner: Sql, password: string): Promise<void> {
  await owner.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(7283910456)`;
    const [existing] = await tx`select 1 from pg_roles where rolname = ${RUNTIME_ROLE}`;
    // Role DDL cannot take bind parameters; the password is hex we generated and is quoted by format().
    const [stmt] = await tx<{ q: string }[]>`select format(
      ${existing ? 'ALTER ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT' : 'CREATE ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE INHERIT'},
      ${RUNTIME_ROLE}::text, ${password}::text) as q`;
    await tx.unsafe(stmt!.q);
    await tx.unsafe(`GRANT ${APP_GROUP_ROLE} TO ${RUNTIME_ROLE}`);
  });
}

/** Let a runtime role supplied through DATABASE_APP_URL use Steward's tables. */
export async function grantAppRole(owner: Sql, roleName: string): Promise<void> {
  const [stmt] = await owner<
    { q: string }[]
  >`select format('GRANT %I TO %I', ${APP_GROUP_ROLE}::text, ${roleName}::text) as q`;
  await owner.unsafe(stmt!.q);
}

export interface RuntimeRoleCheck {
  role: string;
  problems: string[];
}

/**
 * Refuse a runtime role that could bypass row-level security: a superuser, a BYPASSRLS role,
 * the owner of any Steward table (owners are exempt from RLS unless it is forced; we force
 * it, but an owner could also turn it off), or a member of a role that is any of these (a member
 * can SET ROLE to it, or uses its ownership directly).
 */
export async function checkRuntimeRole(app: Queryable): Promise<RuntimeRoleCheck> {
  const [role] = await app<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean }[]>`
    select rolname, rolsuper, rolbypassrls from pg_roles where rolname = current_user`;
  const owned = await app<{ tablename: string; direct: boolean }[]>`
    select tablename, tableowner = current_user as direct from pg_tables
    where schemaname = 'public' and pg_has_role(current_user, tableowner, 'MEMBER') order by tablename`;
  const groups = await app<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean }[]>`
    select rolname, rolsuper, rolbypassrls from pg_roles
    where rolname <> current_user and (rolsuper or rolbypassrls) and pg_has_role(current_user, oid, 'MEMBER')
    order by rolname`;
  const problems: string[] = [];
  if (!role) problems.push('current_user not found in pg_roles');
  else {
    if (role.rolsuper) problems.push(`role ${role.rolname} is a superuser`);
    if (role.rolbypassrls) problems.push(`role ${role.rolname} has BYPASSRLS`);
  }
  for (const g of groups) {
    problems.push(
      `role ${role?.rolname} is a member of ${g.rolname}, a ${g.rolsuper ? 'superuser' : 'BYPASSRLS role'}`,
    );
  }
  const direct = owned.filter((t) => t.direct).map((t) => t.tablename);
  const inherited = owned.filter((t) => !t.direct).map((t) => t.tablename);
  if (direct.length) problems.push(`role owns tables: ${direct.join(', ')}`);
  if (inherited.length) problems.push(`role can act as the owner of tables: ${inherited.join(', ')}`);
  return { role: role?.rolname ?? '?', problems };
}

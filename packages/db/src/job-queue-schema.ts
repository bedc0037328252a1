import { Logger, runMigrations } from 'graphile-worker';
import type { Sql } from './database.ts';
import { APP_GROUP_ROLE } from './runtime-role.ts';

export const silentLogger = new Logger(() => () => {});

/**
 * Install or upgrade graphile-worker's schema as the owner, then let the runtime role use it.
 * Jobs carry ids only; the queue tables hold no tenant data, so they need no RLS.
 */
export async function migrateJobQueue(ownerUrl: string, owner: Sql): Promise<void> {
  await runMigrations({ connectionString: ownerUrl, logger: silentLogger });
  // Several processes starting at once (CLI commands run side by side) deadlocked here: each GRANT
  // ... ON ALL TABLES rewrites the same catalog rows, in an order that can differ between sessions.
  // So one process at a time (a transaction-scoped advisory lock).
  const LOCK = 7283910457;
  await owner.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK})`;
    await tx.unsafe(`GRANT USAGE ON SCHEMA graphile_worker TO ${APP_GROUP_ROLE}`);
    await tx.unsafe(
      `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA graphile_worker TO ${APP_GROUP_ROLE}`,
    );
    await tx.unsafe(
      `GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA graphile_worker TO ${APP_GROUP_ROLE}`,
    );
    await tx.unsafe(`GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA graphile_worker TO ${APP_GROUP_ROLE}`);
  });
  // graphile-worker turns on RLS (without policies) for its private tables; the runtime role gets
  // one policy per table that lets it use the queue. These tables hold job ids, not tenant data.
  // Only tables still without it: (re)creating a policy locks its table against running workers.
  const tables = await owner<{ relname: string }[]>`
    select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'graphile_worker' and c.relkind = 'r' and c.relrowsecurity
      and not exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = 'steward_app_queue')
    order by c.relname`;
  for (const { relname } of tables) {
    const [stmt] = await owner<{ drop: string; create: string }[]>`
      select format('DROP POLICY IF EXISTS steward_app_queue ON graphile_worker.%I', ${relname}::text) as drop,
             format('CREATE POLICY steward_app_queue ON graphile_worker.%I TO %I USING (true) WITH CHECK (true)',
                    ${relname}::text, ${APP_GROUP_ROLE}::text) as create`;
    // One table per transaction, so a worker holding another queue table cannot deadlock with this.
    await owner.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(${LOCK})`;
      await tx.unsafe(stmt!.drop);
      await tx.unsafe(stmt!.create);
    });
  }
}

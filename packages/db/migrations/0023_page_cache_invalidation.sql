-- Page cache invalidation (packages/core/src/cache/page-cache.ts): every statement that changes a
-- table a cached page reads announces the tenants whose pages it may have changed, two ways, inside
-- the transaction that made the change:
--
-- * pg_notify('steward_page_cache', '<tenant uuid>,<tenant uuid>,...' or '*' for every tenant):
--   delivered on commit (never for a rolled-back transaction) to every Steward process, which drops
--   those tenants' pages;
-- * the transaction-local setting app.changed_tenants (the same list, accumulated over the
--   transaction): the process that commits reads it together with its COMMIT and drops the pages
--   synchronously, before it answers its client (read-your-writes; a NOTIFY arrives later).
--
-- Statement-level triggers with transition tables: one announcement per statement, not per row.
-- The pages read memberships, users (through memberships) and roles. A user belongs to several
-- tenants, so a change of a users row announces every tenant the user is a member of: that lookup
-- runs with app.system = 'on' (memberships may be READ under system access, see 0001), set by the
-- function's SET clause and restored when it returns, so the caller's own context is untouched.
-- A payload or setting that would name more than 100 tenants becomes '*' (NOTIFY payloads are
-- limited to 8000 bytes).

CREATE FUNCTION page_cache_announce(changed text) RETURNS void
  LANGUAGE plpgsql
  AS $$
DECLARE
  previous text := coalesce(current_setting('app.changed_tenants', true), '');
  merged text;
BEGIN
  IF changed IS NULL OR changed = '' THEN
    RETURN;
  END IF;
  IF length(changed) > 3700 THEN
    changed := '*';
  END IF;
  IF previous = '*' OR changed = '*' THEN
    merged := '*';
  ELSIF previous = '' THEN
    merged := changed;
  ELSE
    merged := previous || ',' || changed;
  END IF;
  IF length(merged) > 3700 THEN
    merged := '*';
  END IF;
  PERFORM set_config('app.changed_tenants', merged, true);
  PERFORM pg_notify('steward_page_cache', changed);
END
$$;

-- memberships and roles: the tenants are in the rows.
CREATE FUNCTION page_cache_tenant_rows() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  ids text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    ids := '*';
  ELSIF TG_OP = 'INSERT' THEN
    SELECT string_agg(DISTINCT tenant_id::text, ',') INTO ids FROM new_rows;
  ELSIF TG_OP = 'DELETE' THEN
    SELECT string_agg(DISTINCT tenant_id::text, ',') INTO ids FROM old_rows;
  ELSE
    SELECT string_agg(DISTINCT t::text, ',') INTO ids
      FROM (SELECT tenant_id AS t FROM old_rows UNION SELECT tenant_id FROM new_rows) changed;
  END IF;
  PERFORM page_cache_announce(ids);
  RETURN NULL;
END
$$;

-- users: the tenants are those the changed users are members of. A new user is in no tenant yet
-- (no insert trigger: the membership's insert announces it); a deleted user's memberships are
-- deleted by the cascade, whose own trigger announces their tenants as well.
CREATE FUNCTION page_cache_user_rows() RETURNS trigger
  LANGUAGE plpgsql
  SET app.system = 'on'
  AS $$
DECLARE
  ids text;
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    ids := '*';
  ELSIF TG_OP = 'UPDATE' THEN
    SELECT string_agg(DISTINCT m.tenant_id::text, ',') INTO ids
      FROM memberships m
      WHERE m.user_id IN (SELECT id FROM old_rows UNION SELECT id FROM new_rows);
  ELSE
    SELECT string_agg(DISTINCT m.tenant_id::text, ',') INTO ids
      FROM memberships m
      WHERE m.user_id IN (SELECT id FROM old_rows);
  END IF;
  PERFORM page_cache_announce(ids);
  RETURN NULL;
END
$$;

DO $$
DECLARE
  t text;
  fn text;
BEGIN
  FOREACH t IN ARRAY ARRAY['memberships', 'roles', 'users'] LOOP
    fn := CASE WHEN t = 'users' THEN 'page_cache_user_rows' ELSE 'page_cache_tenant_rows' END;
    IF t <> 'users' THEN
      EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
        'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t || '_page_cache_insert', t, fn);
    END IF;
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows '
      'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t || '_page_cache_update', t, fn);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
      'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t || '_page_cache_delete', t, fn);
    EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I '
      'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t || '_page_cache_truncate', t, fn);
  END LOOP;
END
$$;

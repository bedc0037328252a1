import { describe, expect, it } from 'vitest';
import type { Database, Tx } from '@steward/db/database';
import type { AccessTokens } from './access-tokens.ts';
import { Authenticator } from './authenticator.ts';
import { sha256 } from '../shared/secrets.ts';

const TENANT = '00000000-0000-4000-8000-0000000000aa';
const PREFIX = 'abcdefghijkl';
const SECRET = 'x'.repeat(40);
const KEY = `stw_${PREFIX}_${SECRET}`;

/**
 * A database that answers the API key lookups from memory, counts them, and can hold them until
 * released (to make loads overlap). Only what Authenticator#loadKey and #touch use.
 */
function keyDatabase() {
  let lookups = 0;
  let revoked = false;
  let gate: Promise<void> = Promise.resolve();
  const answer = (query: string) => {
    if (query.includes('select tenant_id from api_keys')) return [{ tenant_id: TENANT }];
    if (query.includes('from api_keys k join roles')) {
      lookups++;
      return [
        {
          tenant_id: TENANT,
          id: '00000000-0000-4000-8000-0000000000bb',
          name: 'k',
          key_hash: sha256(SECRET),
          revoked_at: revoked ? new Date() : null,
          expires_at: null,
          role_name: 'viewer',
          role_builtin: true,
          role_permissions: [],
        },
      ];
    }
    return [];
  };
  // The rows are read when the statement runs (its snapshot); the key lookup is answered when released.
  const tx = ((strings: TemplateStringsArray) => {
    const query = strings.join('?');
    const rows = answer(query);
    return query.includes('k join roles') ? gate.then(() => rows) : Promise.resolve(rows);
  }) as unknown as Tx;
  const run = <T>(fn: (tx: Tx) => Promise<T>) => fn(tx);
  const db = { withSystemAccess: run, withTenant: (_t: string, fn: (tx: Tx) => Promise<unknown>) => run(fn) };
  return {
    db: db as unknown as Database,
    lookups: () => lookups,
    revoke: () => (revoked = true),
    hold: () => {
      let release!: () => void;
      gate = new Promise<void>((r) => (release = r));
      return () => {
        gate = Promise.resolve();
        release();
      };
    },
  };
}

describe('Authenticator cache', () => {
  it('reads an API key once for concurrent requests when it is not cached', async () => {
    const k = keyDatabase();
    const auth = new Authenticator(k.db, {} as AccessTokens);
    const release = k.hold();
    const all = Promise.all(Array.from({ length: 20 }, () => auth.authenticate(KEY)));
    release();
    const principals = await all;
    expect(principals.every((p) => p.tenantId === TENANT)).toBe(true);
    expect(k.lookups()).toBe(1);
    await auth.authenticate(KEY);
    expect(k.lookups()).toBe(1);
  });

  it('neither joins nor caches a load that began before a revocation in this process', async () => {
    const k = keyDatabase();
    const auth = new Authenticator(k.db, {} as AccessTokens);
    const release = k.hold();
    const before = auth.authenticate(KEY); // loads the key as it is now (not revoked)
    await new Promise((r) => setTimeout(r, 5));
    k.revoke();
    auth.invalidateApiKey(PREFIX);
    const after = auth.authenticate(KEY); // must read again, not join the load in flight
    release();
    await expect(before).resolves.toMatchObject({ tenantId: TENANT });
    await expect(after).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    // and the pre-revocation load was not cached
    await expect(auth.authenticate(KEY)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    expect(k.lookups()).toBe(2);
  });
});

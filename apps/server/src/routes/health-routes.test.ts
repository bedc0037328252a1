import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDestination } from '@steward/core/siem/destination-service';
import { createConnection } from '@steward/core/connections/connection-service';
import { createRole } from '@steward/core/identity/role-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { tenantHealth } from '@steward/core/watchers/health-service';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'health-a');
  b = await createTenantFixture(t, 'health-b');
});
afterAll(() => t?.close());

interface Health {
  watchers: { name: string; state: string; holder: string | null; renewedAt: string | null }[];
  mailboxes: { id: string; name: string; lastProgressAt: string | null }[];
  siem: { id: string; name: string; lag: number; failing: boolean; lastErrorAt: string | null }[];
}

const health = async (token: string) =>
  expectStatus(await t.app.inject({ url: '/api/v1/health', headers: bearer(token) }), 200).json() as Health;

describe('GET /api/v1/health', () => {
  it('shows the watcher leases as recorded, without the holder for tenant users', async () => {
    await t.db.owner`delete from leases where name in ('watch:folder', 'scheduler', 'watch:imap')`;
    await t.db.owner`
      insert into leases (name, holder, expires_at, renewed_at) values
        ('scheduler', 'host-1:abc:42:ffff', now() + interval '30 seconds', now() - interval '2 seconds'),
        ('watch:folder', 'host-2:abc:43:eeee', now() - interval '1 minute', now() - interval '2 minutes')`;
    const h = await health(a.token);
    const byName = Object.fromEntries(h.watchers.map((w) => [w.name, w]));
    expect(byName['scheduler']).toMatchObject({ state: 'held', holder: null });
    expect(byName['watch:folder']!.state).toBe('expired');
    expect(byName['watch:imap']).toMatchObject({ state: 'never', renewedAt: null });
    expect(Date.now() - new Date(byName['scheduler']!.renewedAt!).getTime()).toBeGreaterThan(1000);
    // Platform administrators see which process holds each.
    const admin = await tenantHealth(t.res, a.tenant.id, { showHolders: true });
    expect(admin.watchers.find((w) => w.name === 'scheduler')!.holder).toBe('host-1:abc:42:ffff');
  });

  it("shows the tenant's own mailboxes and SIEM lag and failures, never another tenant's", async () => {
    const dest = await createDestination(t.res, a.tenant.id, SYSTEM_ACTOR, {
      name: 'siem-a',
      kind: 'https',
      config: { url: 'https://siem.example.com/ingest' },
    });
    await createDestination(t.res, b.tenant.id, SYSTEM_ACTOR, {
      name: 'siem-b',
      kind: 'https',
      config: { url: 'https://siem.example.com/ingest' },
    });
    const box = await createConnection(t.res, a.tenant.id, SYSTEM_ACTOR, {
      kind: 'imap',
      name: 'inbox-a',
      config: { host: 'imap.example.com', username: 'robot' },
      secret: 'imap-password',
    });
    let h = await health(a.token);
    expect(h.siem.map((s) => s.name)).toEqual(['siem-a']);
    const [head] = await t.db.owner<
      { seq: string }[]
    >`select seq from audit_heads where tenant_id = ${a.tenant.id}`;
    expect(h.siem[0]).toMatchObject({
      id: dest.id,
      lag: Number(head!.seq),
      failing: false,
      lastErrorAt: null,
    });
    expect(h.mailboxes).toEqual([{ id: box.id, name: 'inbox-a', lastProgressAt: null }]);

    await t.db.owner`
      insert into siem_cursors (tenant_id, destination, last_seq, attempts, last_error, last_error_at)
      values (${a.tenant.id}, ${'tenant:' + dest.id}, 1, 3, 'connection refused', now())`;
    await t.db.owner`
      insert into imap_state (tenant_id, connection_id, uidvalidity, last_uid) values (${a.tenant.id}, ${box.id}, 1, 7)`;
    h = await health(a.token);
    expect(h.siem[0]!.failing).toBe(true);
    expect(h.siem[0]!.lastErrorAt).not.toBeNull();
    expect(h.siem[0]!.lag).toBeGreaterThanOrEqual(Number(head!.seq) - 1);
    expect(h.mailboxes[0]!.lastProgressAt).not.toBeNull();
    expect(JSON.stringify(h)).not.toContain('connection refused');

    const other = await health(b.token);
    expect(other.siem.map((s) => s.name)).toEqual(['siem-b']);
    expect(other.mailboxes).toEqual([]);
  });

  it('needs tasks:read', async () => {
    await createRole(t.res, a.tenant.id, SYSTEM_ACTOR, new Set(['tenant:read']), {
      name: 'outsider',
      permissions: ['tenant:read'],
    });
    await addUser(t, a.tenant.id, 'outsider@health-a.test', 'outsider');
    const outsider = await loginAs(t, 'outsider@health-a.test', 'health-a');
    expectStatus(await t.app.inject({ url: '/api/v1/health', headers: bearer(outsider.accessToken) }), 403);
    expectStatus(await t.app.inject({ url: '/api/v1/health' }), 401);
  });
});

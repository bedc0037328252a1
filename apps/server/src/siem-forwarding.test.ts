import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SYSTEM_ACTOR, auditActor } from '@steward/core/resources';
import { startSiemForwarding, type SiemForwardingHandle } from '@steward/core/siem/siem-forwarding';
import { HttpsReceiver, selfSignedCert, SyslogReceiver, type ReceivedLog } from './testing/siem-receivers.ts';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

const cert = await selfSignedCert();
if (!cert)
  console.warn('SIEM TLS and HTTPS tests skipped: install the openssl program (apt package openssl)');

let t: TestApp;
let a: TenantFixture;
let b: TenantFixture;
let syslog: SyslogReceiver;
let tlsSyslog: SyslogReceiver;
let https: HttpsReceiver;
let forwarding: SiemForwardingHandle;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(check: () => Promise<boolean> | boolean, ms = 20_000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what} not met in time`);
    await sleep(50);
  }
}

async function append(tenantId: string, n: number, label: string) {
  for (let i = 0; i < n; i++) {
    await t.res.db.withTenant(tenantId, (tx) =>
      t.res.audit.append(tx, tenantId, {
        ...auditActor(SYSTEM_ACTOR),
        action: 'test.siem',
        details: { label, i, tricky: 'quote " backslash \\ bracket ] ünïcødé' },
      }),
    );
  }
}

async function chain(tenantId: string) {
  return t.db.owner<{ seq: string; hash: string }[]>`
    select seq, hash from audit_log where tenant_id = ${tenantId} order by seq`;
}

/** In the receiver's view of one tenant: no gap, first arrivals in order, hashes as stored. */
async function expectComplete(log: ReceivedLog, tenantId: string) {
  const rows = await chain(tenantId);
  const unique = log.unique(tenantId);
  expect(unique).toEqual(rows.map((r) => Number(r.seq)));
  const hashes = new Map(log.all.filter((r) => r.tenantId === tenantId).map((r) => [r.seq, r.hash]));
  for (const r of rows) expect(hashes.get(Number(r.seq))).toBe(r.hash);
  // A re-sent batch restarts at the cursor: every arrival is a re-send (<= newest so far) or the next.
  let newest = 0;
  for (const seq of log.seqs(tenantId)) {
    expect(seq <= newest || seq === newest + 1).toBe(true);
    newest = Math.max(newest, seq);
  }
}

const forwardingOptions = () => ({
  leaseMs: 3000,
  refreshMs: 500,
  installation: cert
    ? [
        {
          name: 'soc',
          kind: 'syslog' as const,
          config: { host: '127.0.0.1', port: tlsSyslog.port, tls: true, caCert: cert.cert, batchSize: 9 },
        },
      ]
    : [],
  forwarder: { pollMs: 100, minBackoffMs: 50, maxBackoffMs: 400, settleMs: 50, timeoutMs: 3000 },
});

const delivered = (log: ReceivedLog, tenantId: string) => async () =>
  log.unique(tenantId).length === (await chain(tenantId)).length;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'siem-a');
  b = await createTenantFixture(t, 'siem-b');
  syslog = new SyslogReceiver();
  await syslog.start();
  if (cert) {
    tlsSyslog = new SyslogReceiver(cert);
    await tlsSyslog.start();
    https = new HttpsReceiver(cert);
    await https.start();
  }
});
afterAll(async () => {
  await forwarding?.stop();
  await syslog?.stop();
  await tlsSyslog?.stop();
  await https?.stop();
  await t?.close();
});

describe('SIEM destinations (admin API)', () => {
  it('creates a syslog destination for tenant A; the secret is write-only and the change audited', async () => {
    const r = expectStatus(
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/siem/destinations',
        headers: bearer(a.token),
        payload: {
          name: 'collector',
          kind: 'syslog',
          config: { host: '127.0.0.1', port: syslog.port, allowPrivateNetwork: true, batchSize: 7 },
        },
      }),
      201,
    );
    expect(r.json()).toMatchObject({ name: 'collector', kind: 'syslog', enabled: true, hasSecret: false });
    const bad = await t.app.inject({
      method: 'POST',
      url: '/api/v1/siem/destinations',
      headers: bearer(a.token),
      payload: { name: 'bad', kind: 'https', config: { url: 'http://plain.example' } },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('url');
    const [entry] = await t.db.owner<{ action: string }[]>`
      select action from audit_log where tenant_id = ${a.tenant.id} and action = 'siem.destination.created'`;
    expect(entry).toBeDefined();
  });

  it.skipIf(!cert)(
    'creates an HTTPS destination for tenant B with a token that is never returned',
    async () => {
      const r = expectStatus(
        await t.app.inject({
          method: 'POST',
          url: '/api/v1/siem/destinations',
          headers: bearer(b.token),
          payload: {
            name: 'https-siem',
            kind: 'https',
            config: {
              url: `https://127.0.0.1:${https.port}/ingest`,
              caCert: cert!.cert,
              allowPrivateNetwork: true,
              batchSize: 5,
              headers: { 'x-source': 'steward-test' },
            },
            secret: 'siem-token-123',
          },
        }),
        201,
      );
      expect(r.json()).toMatchObject({ hasSecret: true });
      expect(r.body).not.toContain('siem-token-123');
      const list = expectStatus(
        await t.app.inject({ method: 'GET', url: '/api/v1/siem/destinations', headers: bearer(b.token) }),
        200,
      );
      expect(list.body).not.toContain('siem-token-123');
      expect(list.json().items).toHaveLength(1);
      const details = await t.db.owner<{ details: unknown }[]>`
      select details from audit_log where tenant_id = ${b.tenant.id} and action like 'siem.%'`;
      expect(JSON.stringify(details)).not.toContain('siem-token-123');
    },
  );
});

describe('forwarding the audit stream', () => {
  it('delivers every tenant chain in order, over TCP, TLS and HTTPS, under one lease per destination', async () => {
    await append(a.tenant.id, 20, 'before');
    await append(b.tenant.id, 12, 'before');
    forwarding = startSiemForwarding(t.res, forwardingOptions());
    await until(delivered(syslog.log, a.tenant.id), 20_000, 'syslog delivery');
    await expectComplete(syslog.log, a.tenant.id);
    // A tenant destination carries only its own tenant.
    expect(syslog.log.seqs(b.tenant.id)).toEqual([]);
    expect(syslog.malformed).toEqual([]);
    if (cert) {
      await until(delivered(https.log, b.tenant.id), 20_000, 'https delivery');
      await expectComplete(https.log, b.tenant.id);
      expect(https.log.seqs(a.tenant.id)).toEqual([]);
      expect([...https.authorizations]).toEqual(['Bearer siem-token-123']);
      // The installation-wide destination carries every tenant.
      await until(delivered(tlsSyslog.log, a.tenant.id), 20_000, 'tls delivery a');
      await until(delivered(tlsSyslog.log, b.tenant.id), 20_000, 'tls delivery b');
      await expectComplete(tlsSyslog.log, a.tenant.id);
      await expectComplete(tlsSyslog.log, b.tenant.id);
      expect(tlsSyslog.malformed).toEqual([]);
    }
    const leases = await t.db.owner<{ name: string; holder: string }[]>`
      select name, holder from leases where name like 'siem:%' order by name`;
    expect(leases.map((l) => l.name)).toEqual(
      expect.arrayContaining([expect.stringMatching(/^siem:tenant:[0-9a-f-]{36}$/)]),
    );
    for (const l of leases) expect(l.holder).toBe(forwarding.holder);
    // The status in the API.
    const list = expectStatus(
      await t.app.inject({ method: 'GET', url: '/api/v1/siem/destinations', headers: bearer(a.token) }),
      200,
    );
    const status = list.json().items[0].status as { forwardedSeq: number; headSeq: number; lag: number };
    expect(status.forwardedSeq).toBeGreaterThanOrEqual(20);
  });

  it('survives an outage of every receiver: retries with backoff, resumes, loses nothing', async () => {
    await syslog.stop();
    if (cert) {
      await tlsSyslog.stop();
      https.failWith = 503;
    }
    await append(a.tenant.id, 30, 'during');
    await append(b.tenant.id, 25, 'during');
    // While the receivers are down, the cursors stay put and the failures are recorded.
    await until(
      async () => {
        const [row] = await t.db.owner<{ attempts: number }[]>`
        select attempts from siem_cursors where tenant_id = ${a.tenant.id} and destination like 'tenant:%'`;
        return (row?.attempts ?? 0) >= 2;
      },
      10_000,
      'failed attempts recorded',
    );
    const [stuck] = await t.db.owner<{ last_seq: string; last_error: string }[]>`
      select last_seq, last_error from siem_cursors where tenant_id = ${a.tenant.id} and destination like 'tenant:%'`;
    expect(Number(stuck!.last_seq)).toBeLessThan((await chain(a.tenant.id)).length);
    expect(stuck!.last_error).toBeTruthy();
    if (cert) await until(() => https.rejected > 0, 10_000, 'https rejections');
    await sleep(800);
    await append(a.tenant.id, 5, 'still down');

    await syslog.start();
    if (cert) {
      await tlsSyslog.start();
      https.failWith = undefined;
    }
    await append(a.tenant.id, 5, 'after');
    await until(delivered(syslog.log, a.tenant.id), 30_000, 'syslog resume');
    await expectComplete(syslog.log, a.tenant.id);
    if (cert) {
      await until(delivered(https.log, b.tenant.id), 30_000, 'https resume');
      await expectComplete(https.log, b.tenant.id);
      await until(delivered(tlsSyslog.log, a.tenant.id), 30_000, 'tls resume a');
      await until(delivered(tlsSyslog.log, b.tenant.id), 30_000, 'tls resume b');
      await expectComplete(tlsSyslog.log, a.tenant.id);
      await expectComplete(tlsSyslog.log, b.tenant.id);
    }
    // At least once: duplicates are possible after an outage, and counted (receivers dedupe by seq).
    console.info(
      `SIEM duplicates after the outage: syslog ${syslog.log.duplicates(a.tenant.id)}` +
        (cert
          ? `, https ${https.log.duplicates(b.tenant.id)}, tls ${tlsSyslog.log.duplicates(a.tenant.id) + tlsSyslog.log.duplicates(b.tenant.id)}`
          : ''),
    );
    // The receivers have everything; each cursor moves once its destination acknowledged the last
    // batch (for syslog, a moment after the write), so wait for every cursor of tenant A to catch up.
    const head = (await chain(a.tenant.id)).length;
    const cursors = () => t.db.owner<{ last_seq: string; last_error: string | null }[]>`
      select last_seq, last_error from siem_cursors where tenant_id = ${a.tenant.id} and destination like 'tenant:%'`;
    await until(
      async () => (await cursors()).every((c) => Number(c.last_seq) === head),
      10_000,
      'cursors caught up',
    );
    for (const cursor of await cursors()) expect(cursor.last_error).toBeNull();
  });

  it('a disabled destination stops; re-enabled it resumes from its cursor without a gap', async () => {
    const list = expectStatus(
      await t.app.inject({ method: 'GET', url: '/api/v1/siem/destinations', headers: bearer(a.token) }),
      200,
    );
    const id = list.json().items[0].id as string;
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/siem/destinations/${id}`,
        headers: bearer(a.token),
        payload: { enabled: false },
      }),
      200,
    );
    await forwarding.refresh();
    const before = syslog.log.all.length;
    await append(a.tenant.id, 4, 'disabled');
    await sleep(500);
    expect(syslog.log.all.length).toBe(before);
    expectStatus(
      await t.app.inject({
        method: 'PATCH',
        url: `/api/v1/siem/destinations/${id}`,
        headers: bearer(a.token),
        payload: { enabled: true },
      }),
      200,
    );
    await forwarding.refresh();
    await until(delivered(syslog.log, a.tenant.id), 20_000, 'resume after enable');
    await expectComplete(syslog.log, a.tenant.id);
  });

  it('one process per destination: a second one waits for the lease and takes over when the first stops', async () => {
    const second = startSiemForwarding(t.res, { ...forwardingOptions(), holder: 'second-process' });
    try {
      await sleep(1200);
      const held = await t.db.owner<{ holder: string }[]>`select holder from leases where name like 'siem:%'`;
      expect(held.length).toBeGreaterThan(0);
      expect(held.every((l) => l.holder === forwarding.holder)).toBe(true);
      await forwarding.stop();
      await append(a.tenant.id, 10, 'after failover');
      await until(delivered(syslog.log, a.tenant.id), 20_000, 'delivery after failover');
      await expectComplete(syslog.log, a.tenant.id);
      if (cert) {
        await until(delivered(tlsSyslog.log, a.tenant.id), 20_000, 'tls delivery after failover');
        await expectComplete(tlsSyslog.log, a.tenant.id);
      }
      const now = await t.db.owner<{ holder: string }[]>`select holder from leases where name like 'siem:%'`;
      expect(now.length).toBe(held.length);
      expect(now.every((l) => l.holder === 'second-process')).toBe(true);
    } finally {
      forwarding = second;
    }
  });

  it('a receiver that crashes again and again while entries stream in still ends with every entry', async () => {
    let appending = true;
    const writer = (async () => {
      for (let i = 0; appending; i++) await append(a.tenant.id, 1, `stream ${i}`);
    })();
    for (let i = 0; i < 6; i++) {
      await sleep(150 + Math.random() * 150);
      await syslog.stop();
      await sleep(100 + Math.random() * 200);
      await syslog.start();
    }
    appending = false;
    await writer;
    await until(delivered(syslog.log, a.tenant.id), 30_000, 'delivery after repeated crashes');
    await expectComplete(syslog.log, a.tenant.id);
    expect(syslog.malformed).toEqual([]);
    console.info(`SIEM duplicates after repeated receiver crashes: ${syslog.log.duplicates(a.tenant.id)}`);
  });
});

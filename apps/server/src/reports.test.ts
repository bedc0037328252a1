import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMember } from '@steward/core/identity/user-service';
import { SYSTEM_ACTOR } from '@steward/core/resources';
import { csvCell } from '@steward/core/reports/csv';
import { parseCsv, pdfText } from './testing/pdf-text.ts';
import {
  addUser,
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  loginAs,
  TEST_PASSWORD,
  type TenantFixture,
  type TestApp,
} from './testing/test-app.ts';

let t: TestApp;
let a: TenantFixture;
let auditor: string;
let viewer: string;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'reports-a');
  await createTenantFixture(t, 'reports-b');
  await addUser(t, a.tenant.id, 'auditor@reports-a.test', 'auditor');
  await addUser(t, a.tenant.id, 'viewer@reports-a.test', 'viewer');
  await addMember(t.res, a.tenant.id, SYSTEM_ACTOR, {
    email: 'evil@reports-a.test',
    password: TEST_PASSWORD,
    name: '=HYPERLINK("http://evil.example","x"), "quoted"',
    role: 'member',
  });
  auditor = (await loginAs(t, 'auditor@reports-a.test', 'reports-a')).accessToken;
  viewer = (await loginAs(t, 'viewer@reports-a.test', 'reports-a')).accessToken;
  // Configuration changes, a denied request, a failed sign-in, a used API key.
  expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/roles',
      headers: bearer(a.token),
      payload: { name: 'reviewers', description: 'reviews', permissions: ['tenant:read'] },
    }),
    201,
  );
  expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/connections',
      headers: bearer(a.token),
      payload: { kind: 'http', name: 'crm', config: { baseUrl: 'https://crm.example.com/' }, secret: 'tok' },
    }),
    201,
  );
  expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/connections',
      headers: bearer(viewer),
      payload: { kind: 'http', name: 'sneaky', config: { baseUrl: 'https://x.example.com/' } },
    }),
    403,
  );
  expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/auth/login',
      payload: { email: 'viewer@reports-a.test', password: 'wrong password!', tenant: 'reports-a' },
    }),
    401,
  );
  expectStatus(await t.app.inject({ url: '/api/v1/me', headers: bearer(a.apiKey) }), 200);
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string, token = auditor) => t.app.inject({ url, headers: bearer(token) });

describe('CSV cells', () => {
  it('quote per RFC 4180 and neutralise formulas', () => {
    expect(csvCell('plain')).toBe('plain');
    expect(csvCell('a,b')).toBe('"a,b"');
    expect(csvCell('say "hi"')).toBe('"say ""hi"""');
    expect(csvCell('two\nlines')).toBe('"two\nlines"');
    for (const f of ['=1+1', '+1', '-1', '@SUM(A1)', '\tx']) expect(csvCell(f).startsWith("'")).toBe(true);
    expect(csvCell(null)).toBe('');
  });
});

describe('compliance reports', () => {
  it('access review as CSV: members, roles, last sign-in, MFA, API keys and last use', async () => {
    const r = expectStatus(await get('/api/v1/reports/access-review?format=csv'), 200);
    expect(r.headers['content-type']).toMatch(/^text\/csv/);
    expect(r.headers['content-disposition']).toMatch(
      /attachment; filename="steward-reports-a-access-review-/,
    );
    const [header, ...rows] = parseCsv(r.body);
    expect(header).toEqual([
      'Type',
      'User / key',
      'Name',
      'Role',
      'Status',
      'MFA',
      'Last sign-in / use',
      'Created',
      'Expires',
      'Permissions',
    ]);
    const byPrincipal = new Map(rows.map((row) => [row[1], row]));
    const v = byPrincipal.get('viewer@reports-a.test')!;
    expect(v[0]).toBe('user');
    expect(v[3]).toBe('viewer');
    expect(v[5]).toMatch(/^(enabled|disabled)$/);
    expect(Date.parse(v[6]!)).not.toBeNaN();
    expect(v[9]).toContain('tenant:read');
    expect(byPrincipal.get('owner@reports-a.test')![3]).toBe('owner');
    const evil = byPrincipal.get('evil@reports-a.test')!;
    expect(evil[2]).toBe(`'=HYPERLINK("http://evil.example","x"), "quoted"`);
    const key = rows.find((row) => row[0] === 'api_key')!;
    expect(key[1]).toContain('(fixture)');
    expect(key[3]).toBe('admin');
    expect(key[4]).toBe('active');
    expect(Date.parse(key[6]!)).not.toBeNaN();
    // Only this tenant's people.
    expect(r.body).not.toContain('reports-b');
  });

  it('configuration changes and violations come from the audit log', async () => {
    const changes = expectStatus(await get('/api/v1/reports/config-changes?format=json'), 200).json();
    const actions = (changes.rows as { action: string }[]).map((x) => x.action);
    expect(actions).toEqual(expect.arrayContaining(['role.created', 'connection.created', 'user.added']));
    expect(actions).not.toContain('auth.login');
    expect(JSON.stringify(changes)).not.toContain('"tok"');

    const csv = expectStatus(await get('/api/v1/reports/violations?format=csv'), 200);
    const [header, ...rows] = parseCsv(csv.body);
    expect(header).toEqual(['When', 'Seq', 'Action', 'Outcome', 'Actor', 'Target', 'IP', 'Details']);
    const found = rows.map((row) => `${row[2]}/${row[3]}`);
    expect(found).toEqual(expect.arrayContaining(['access.denied/denied', 'auth.login/failure']));
    expect(found.every((f) => !f.endsWith('/success') || f.startsWith('approval.'))).toBe(true);

    const later = expectStatus(
      await get(
        `/api/v1/reports/violations?format=json&since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`,
      ),
      200,
    ).json();
    expect(later.rows).toEqual([]);
  });

  it('PDF: a valid document holding the expected text', async () => {
    const r = expectStatus(await get('/api/v1/reports/access-review?format=pdf'), 200);
    expect(r.headers['content-type']).toBe('application/pdf');
    const pdf = r.rawPayload;
    expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
    expect(pdf.subarray(-6).toString()).toMatch(/%%EOF\s*$/);
    expect(pdf.toString('latin1')).toMatch(/startxref\s+\d+\s+%%EOF/);
    const text = pdfText(pdf);
    expect(text).toContain('Access review');
    expect(text).toContain('reports-a');
    expect(text).toContain('viewer@reports-a.test');
    const violations = pdfText(
      expectStatus(await get('/api/v1/reports/violations?format=pdf'), 200).rawPayload,
    );
    expect(violations).toContain('Policy violations');
    expect(violations).toContain('access.denied');
  });

  it('needs reports:read, names unknown kinds and bad dates, and is audited', async () => {
    expectStatus(await get('/api/v1/reports/access-review?format=csv', viewer), 403);
    expectStatus(await get('/api/v1/reports/payroll?format=csv'), 404);
    const bad = expectStatus(await get('/api/v1/reports/violations?since=yesterday'), 400);
    expect(bad.body).toContain('since');
    expectStatus(await get('/api/v1/reports/access-review?format=xlsx'), 400);
    expectStatus(await get('/api/v1/reports/access-review', a.apiKey), 200);
    const audited = await t.db.owner<{ target_id: string; details: { format: string } }[]>`
      select target_id, details from audit_log where tenant_id = ${a.tenant.id} and action = 'report.generated'`;
    expect(audited.map((x) => `${x.target_id}:${x.details.format}`)).toEqual(
      expect.arrayContaining([
        'access-review:csv',
        'violations:csv',
        'access-review:pdf',
        'config-changes:json',
      ]),
    );
  });

  it('are in the OpenAPI document, with the SIEM routes', async () => {
    const spec = expectStatus(await t.app.inject({ url: '/openapi.json' }), 200).json() as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(spec.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/reports/{kind}',
        '/api/v1/siem/destinations',
        '/api/v1/siem/destinations/{id}',
      ]),
    );
  });

  it('shows MFA as enabled for a member with a confirmed TOTP authenticator or a passkey', async () => {
    const [viewerRow] = await t.db.owner<{ id: string }[]>`
      select id from users where email = 'viewer@reports-a.test'`;
    await t.db.owner`
      insert into passkeys (user_id, credential_id, public_key, name)
      values (${viewerRow!.id}, 'report-test-credential', '\\x00', 'laptop')`;
    try {
      const report = expectStatus(await get('/api/v1/reports/access-review?format=json'), 200).json() as {
        rows: { principal: string; mfa: string }[];
      };
      const mfa = Object.fromEntries(report.rows.map((r) => [r.principal, r.mfa]));
      expect(mfa['viewer@reports-a.test']).toBe('enabled');
      expect(mfa['owner@reports-a.test']).toBe('disabled');
    } finally {
      await t.db.owner`delete from passkeys where credential_id = 'report-test-credential'`;
    }
  });
});

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { inflateRawSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import forge from 'node-forge';
import { SignedXml } from 'xml-crypto';
import {
  bearer,
  createTenantFixture,
  createTestApp,
  expectStatus,
  type TenantFixture,
  type TestApp,
} from '../testing/test-app.ts';

/**
 * SAML 2.0 against responses produced here, signed with a test IdP key and self-signed certificate
 * (node-forge for the certificate, xml-crypto for the XML signatures); @node-saml/node-saml and our
 * own checks validate them.
 */

const IDP_ISSUER = 'https://idp.test/metadata';
const ENTRY_POINT = 'https://idp.test/sso';

interface Idp {
  keyPem: string;
  certPem: string;
}

function makeIdp(): Idp {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const keyPem = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey.export({ type: 'spki', format: 'pem' }).toString());
  cert.serialNumber = '01' + randomBytes(8).toString('hex');
  cert.validity.notBefore = new Date(Date.now() - 86_400_000);
  cert.validity.notAfter = new Date(Date.now() + 365 * 86_400_000);
  const attrs = [{ name: 'commonName', value: 'Steward test IdP' }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.sign(forge.pki.privateKeyFromPem(keyPem), forge.md.sha256.create());
  return { keyPem, certPem: forge.pki.certificateToPem(cert) };
}

let t: TestApp;
let a: TenantFixture;
let idp: Idp;
let attacker: Idp;
let connectionId: string;
let acsUrl: string;

beforeAll(async () => {
  t = await createTestApp();
  a = await createTenantFixture(t, 'sso-saml');
  idp = makeIdp();
  attacker = makeIdp();
  const created = expectStatus(
    await t.app.inject({
      method: 'POST',
      url: '/api/v1/sso-connections',
      headers: bearer(a.token),
      payload: {
        protocol: 'saml',
        name: 'Test SAML IdP',
        config: { entryPoint: ENTRY_POINT, idpIssuer: IDP_ISSUER, idpCert: idp.certPem },
        defaultRole: 'member',
        groupsAttribute: 'groups',
        roleMapping: { 'steward-admins': 'admin' },
      },
    }),
    201,
  ).json();
  connectionId = created.id;
  acsUrl = created.callbackUrl;
});
afterAll(() => t?.close());

/** Start a sign-in: the RelayState and the id of the AuthnRequest we sent. */
async function start(): Promise<{ relayState: string; requestId: string }> {
  const r = expectStatus(await t.app.inject({ url: `/api/v1/sso/sso-saml/${connectionId}/start` }), 302);
  const url = new URL(String(r.headers.location));
  expect(url.origin + url.pathname).toBe(ENTRY_POINT);
  const request = inflateRawSync(Buffer.from(url.searchParams.get('SAMLRequest')!, 'base64')).toString();
  const requestId = /\sID="([^"]+)"/.exec(request)![1]!;
  expect(request).toContain(`AssertionConsumerServiceURL="${acsUrl}"`);
  return { relayState: url.searchParams.get('RelayState')!, requestId };
}

interface ResponseOptions {
  requestId: string;
  assertionId?: string;
  audience?: string;
  recipient?: string;
  destination?: string;
  notBefore?: Date;
  notOnOrAfter?: Date;
  email?: string;
  groups?: string[];
  signer?: Idp;
}

function sign(xml: string, signer: Idp, element: 'Assertion' | 'Response'): string {
  const sig = new SignedXml({ privateKey: signer.keyPem, publicCert: signer.certPem });
  const path = element === 'Response' ? "/*[local-name(.)='Response']" : "//*[local-name(.)='Assertion']";
  sig.addReference({
    xpath: path,
    digestAlgorithm: 'http://www.w3.org/2001/04/xmlenc#sha256',
    transforms: [
      'http://www.w3.org/2000/09/xmldsig#enveloped-signature',
      'http://www.w3.org/2001/10/xml-exc-c14n#',
    ],
  });
  sig.canonicalizationAlgorithm = 'http://www.w3.org/2001/10/xml-exc-c14n#';
  sig.signatureAlgorithm = 'http://www.w3.org/2001/04/xmldsig-more#rsa-sha256';
  sig.computeSignature(xml, {
    location: { reference: `${path}/*[local-name(.)='Issuer']`, action: 'after' },
  });
  return sig.getSignedXml();
}

function samlResponse(o: ResponseOptions): string {
  const now = new Date();
  const notBefore = (o.notBefore ?? new Date(now.getTime() - 60_000)).toISOString();
  const notOnOrAfter = (o.notOnOrAfter ?? new Date(now.getTime() + 300_000)).toISOString();
  const issued = (o.notBefore ? new Date(o.notBefore.getTime() + 1000) : now).toISOString();
  const email = o.email ?? 'carol@idp.example';
  const groups = (o.groups ?? ['steward-admins', 'staff'])
    .map((g) => `<saml:AttributeValue>${g}</saml:AttributeValue>`)
    .join('');
  const assertion =
    `<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="${o.assertionId ?? '_a' + randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${issued}">` +
    `<saml:Issuer>${IDP_ISSUER}</saml:Issuer>` +
    `<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">${email}</saml:NameID>` +
    `<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">` +
    `<saml:SubjectConfirmationData NotOnOrAfter="${notOnOrAfter}" Recipient="${o.recipient ?? acsUrl}" InResponseTo="${o.requestId}"/>` +
    `</saml:SubjectConfirmation></saml:Subject>` +
    `<saml:Conditions NotBefore="${notBefore}" NotOnOrAfter="${notOnOrAfter}">` +
    `<saml:AudienceRestriction><saml:Audience>${o.audience ?? acsUrl}</saml:Audience></saml:AudienceRestriction></saml:Conditions>` +
    `<saml:AuthnStatement AuthnInstant="${issued}" SessionIndex="_s1"><saml:AuthnContext>` +
    `<saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>` +
    `</saml:AuthnContext></saml:AuthnStatement>` +
    `<saml:AttributeStatement>` +
    `<saml:Attribute Name="email"><saml:AttributeValue>${email}</saml:AttributeValue></saml:Attribute>` +
    `<saml:Attribute Name="displayName"><saml:AttributeValue>Carol Example</saml:AttributeValue></saml:Attribute>` +
    `<saml:Attribute Name="groups">${groups}</saml:Attribute>` +
    `</saml:AttributeStatement></saml:Assertion>`;
  const signer = o.signer ?? idp;
  const response =
    `<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ` +
    `ID="_r${randomBytes(16).toString('hex')}" Version="2.0" IssueInstant="${issued}" Destination="${o.destination ?? acsUrl}" InResponseTo="${o.requestId}">` +
    `<saml:Issuer>${IDP_ISSUER}</saml:Issuer>` +
    `<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>` +
    sign(assertion, signer, 'Assertion') +
    `</samlp:Response>`;
  return Buffer.from(sign(response, signer, 'Response')).toString('base64');
}

const post = (relayState: string, samlResponseB64: string) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/sso/sso-saml/${connectionId}/callback`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    payload: new URLSearchParams({ SAMLResponse: samlResponseB64, RelayState: relayState }).toString(),
  });

async function lastFailure(): Promise<string> {
  const [row] = await t.db.owner<{ details: { reason: string } }[]>`
    select details from audit_log where tenant_id = ${a.tenant.id} and action = 'auth.sso_login' and outcome = 'failure'
    order by seq desc limit 1`;
  return row?.details.reason ?? '';
}

async function refused(r: { statusCode: number; body: string }, reason: RegExp) {
  expect(r.statusCode, r.body).toBe(401);
  expect(await lastFailure()).toMatch(reason);
}

describe('SAML sign-in', () => {
  it('publishes service provider metadata with our entity id and ACS URL', async () => {
    const r = expectStatus(await t.app.inject({ url: `/api/v1/sso/sso-saml/${connectionId}/metadata` }), 200);
    expect(r.headers['content-type']).toContain('application/samlmetadata+xml');
    expect(r.body).toContain(`entityID="${acsUrl}"`);
    expect(r.body).toContain(`Location="${acsUrl}"`);
    expect(r.body).toContain('WantAssertionsSigned="true"');
  });

  it('signs a new user in from a signed response and maps their group to a role', async () => {
    const { relayState, requestId } = await start();
    const r = expectStatus(await post(relayState, samlResponse({ requestId })), 303);
    const location = new URL(String(r.headers.location));
    const code = new URLSearchParams(location.hash.split('?')[1]).get('code')!;
    expect(code).toMatch(/^ssx_/);
    const tokens = expectStatus(
      await t.app.inject({ method: 'POST', url: '/api/v1/auth/sso/exchange', payload: { code } }),
      200,
    ).json();
    expect(tokens.user.email).toBe('carol@idp.example');
    const member = expectStatus(
      await t.app.inject({ url: `/api/v1/users/${tokens.user.id}`, headers: bearer(a.token) }),
      200,
    ).json();
    expect(member.role).toBe('admin');
    expect(member.name).toBe('Carol Example');
    expectStatus(await t.app.inject({ url: '/api/v1/users', headers: bearer(tokens.accessToken) }), 200);
    const audit = await t.db.owner<{ action: string; outcome: string }[]>`
      select action, outcome from audit_log where tenant_id = ${a.tenant.id}
        and (target_id = ${tokens.user.id} or actor_id = ${tokens.user.id})`;
    expect(audit).toEqual(
      expect.arrayContaining([
        { action: 'user.provisioned', outcome: 'success' },
        { action: 'auth.sso_login', outcome: 'success' },
        { action: 'auth.login', outcome: 'success' },
      ]),
    );
  });

  it('a HEAD request to the ACS URL (a link scanner) consumes nothing; the POST still signs in', async () => {
    const { relayState, requestId } = await start();
    const head = await t.app.inject({
      method: 'HEAD',
      url: `/api/v1/sso/sso-saml/${connectionId}/callback?RelayState=${encodeURIComponent(relayState)}`,
    });
    expect(head.statusCode).toBe(204);
    expect(head.body).toBe('');
    expectStatus(await post(relayState, samlResponse({ requestId })), 303);
  });

  it('refuses a response signed with another key', async () => {
    const { relayState, requestId } = await start();
    await refused(await post(relayState, samlResponse({ requestId, signer: attacker })), /signature/i);
  });

  it('refuses an assertion for another audience', async () => {
    const { relayState, requestId } = await start();
    await refused(
      await post(relayState, samlResponse({ requestId, audience: 'https://other-sp.example/saml' })),
      /audience/i,
    );
  });

  it('refuses an expired assertion', async () => {
    const { relayState, requestId } = await start();
    const past = new Date(Date.now() - 3600_000);
    await refused(
      await post(
        relayState,
        samlResponse({ requestId, notBefore: past, notOnOrAfter: new Date(past.getTime() + 300_000) }),
      ),
      /expired|NotOnOrAfter/i,
    );
  });

  it('refuses an assertion that is not valid yet', async () => {
    const { relayState, requestId } = await start();
    const future = new Date(Date.now() + 3600_000);
    await refused(
      await post(
        relayState,
        samlResponse({ requestId, notBefore: future, notOnOrAfter: new Date(future.getTime() + 300_000) }),
      ),
      /not yet valid|NotBefore/i,
    );
  });

  it('refuses a replayed assertion id, even inside a fresh sign-in', async () => {
    const assertionId = '_replayed' + randomBytes(8).toString('hex');
    const first = await start();
    expectStatus(
      await post(first.relayState, samlResponse({ requestId: first.requestId, assertionId })),
      303,
    );
    const second = await start();
    await refused(
      await post(second.relayState, samlResponse({ requestId: second.requestId, assertionId })),
      /replay/,
    );
    // The very same POST again: its state is used up.
    const third = await start();
    const body = samlResponse({ requestId: third.requestId });
    expectStatus(await post(third.relayState, body), 303);
    await refused(await post(third.relayState, body), /already used/);
  });

  it('refuses an assertion for another recipient or destination', async () => {
    const one = await start();
    await refused(
      await post(
        one.relayState,
        samlResponse({ requestId: one.requestId, recipient: 'https://evil.example/acs' }),
      ),
      /Recipient/,
    );
    const two = await start();
    await refused(
      await post(
        two.relayState,
        samlResponse({ requestId: two.requestId, destination: 'https://evil.example/acs' }),
      ),
      /Destination/,
    );
  });

  it('refuses a response to another request', async () => {
    const { relayState } = await start();
    await refused(await post(relayState, samlResponse({ requestId: '_not-our-request' })), /InResponseTo/);
  });

  it('refuses an unsigned response', async () => {
    const { relayState, requestId } = await start();
    const signed = Buffer.from(samlResponse({ requestId }), 'base64').toString();
    const stripped = signed.replace(/<(ds:)?Signature[\s\S]*?<\/(ds:)?Signature>/g, '');
    expect(stripped).not.toContain('SignatureValue');
    await refused(await post(relayState, Buffer.from(stripped).toString('base64')), /signature/i);
  });
});

import { randomBytes } from 'node:crypto';
import { SAML, ValidateInResponseTo, type Profile } from '@node-saml/node-saml';
import { DOMParser } from '@xmldom/xmldom';
import type { ResolvedSsoConnection, SamlSettings } from './sso-connection-service.ts';
import type { SsoIdentity } from './sso-identity.ts';

/**
 * SAML 2.0 Web Browser SSO (SP-initiated, HTTP-Redirect request, HTTP-POST response). node-saml
 * checks the signatures (assertion always; the response too unless the connection says otherwise),
 * the issuer, the audience and the NotBefore/NotOnOrAfter window; here we add what it leaves out:
 * the Destination and the bearer Recipient must be our callback URL, the response must answer the
 * request we sent (InResponseTo), and the caller keeps the assertion id against replays.
 */

const CLOCK_SKEW_MS = 30_000;
const SAMLP = 'urn:oasis:names:tc:SAML:2.0:protocol';
const SAML_NS = 'urn:oasis:names:tc:SAML:2.0:assertion';

export function newSamlRequestId(): string {
  return '_' + randomBytes(20).toString('hex');
}

function samlFor(conn: ResolvedSsoConnection, callbackUrl: string, requestId?: string): SAML {
  const s = conn.config as SamlSettings;
  return new SAML({
    callbackUrl,
    entryPoint: s.entryPoint,
    issuer: s.spEntityId ?? callbackUrl,
    audience: s.spEntityId ?? callbackUrl,
    idpCert: s.idpCert,
    ...(s.idpIssuer ? { idpIssuer: s.idpIssuer } : {}),
    wantAssertionsSigned: true,
    wantAuthnResponseSigned: s.requireSignedResponse ?? true,
    acceptedClockSkewMs: CLOCK_SKEW_MS,
    validateInResponseTo: ValidateInResponseTo.never,
    disableRequestedAuthnContext: true,
    ...(requestId ? { generateUniqueId: () => requestId } : {}),
  });
}

export async function samlStart(
  conn: ResolvedSsoConnection,
  callbackUrl: string,
  relayState: string,
  requestId: string,
): Promise<string> {
  return samlFor(conn, callbackUrl, requestId).getAuthorizeUrlAsync(relayState, undefined, {});
}

/** Our SP metadata (entity id, ACS URL, signed assertions wanted), for the IdP's administrator. */
export function samlMetadata(conn: ResolvedSsoConnection, callbackUrl: string): string {
  return samlFor(conn, callbackUrl).generateServiceProviderMetadata(null, null);
}

export interface SamlResult {
  identity: SsoIdentity;
  assertionId: string;
  /** Until when the assertion could be accepted (for the replay cache). */
  notOnOrAfter: Date;
}

function first(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (Array.isArray(v) && typeof v[0] === 'string') return v[0];
  return undefined;
}

export async function samlFinish(
  conn: ResolvedSsoConnection,
  callbackUrl: string,
  body: { SAMLResponse: string; RelayState?: string | undefined },
  requestId: string,
): Promise<SamlResult> {
  const s = conn.config as SamlSettings;
  const { profile } = await samlFor(conn, callbackUrl).validatePostResponseAsync({
    SAMLResponse: body.SAMLResponse,
    ...(body.RelayState ? { RelayState: body.RelayState } : {}),
  });
  if (!profile) throw new Error('the SAML response holds no assertion');
  const checked = checkEnvelope(profile, callbackUrl, requestId);
  const email =
    first(profile[s.emailAttribute ?? '']) ??
    first(profile.email) ??
    first(profile.mail) ??
    (profile.nameIDFormat?.endsWith(':emailAddress') ? profile.nameID : undefined);
  const groups = conn.groupsAttribute ? profile[conn.groupsAttribute] : undefined;
  return {
    identity: {
      subject: profile.nameID,
      email,
      emailVerified: true,
      name: first(profile[s.nameAttribute ?? 'displayName']) ?? '',
      groups: Array.isArray(groups)
        ? groups.filter((g): g is string => typeof g === 'string')
        : typeof groups === 'string'
          ? [groups]
          : [],
    },
    ...checked,
  };
}

/** Destination, Recipient, InResponseTo and the assertion id, from the validated XML. */
function checkEnvelope(
  profile: Profile,
  callbackUrl: string,
  requestId: string,
): { assertionId: string; notOnOrAfter: Date } {
  const responseXml = profile.getSamlResponseXml?.();
  const assertionXml = profile.getAssertionXml?.();
  if (!responseXml || !assertionXml) throw new Error('the SAML response could not be read');
  const parser = new DOMParser();
  const response = parser.parseFromString(responseXml, 'text/xml').documentElement;
  const assertion = parser.parseFromString(assertionXml, 'text/xml').documentElement;
  if (!response || response.localName !== 'Response' || response.namespaceURI !== SAMLP)
    throw new Error('not a SAML Response');
  if (!assertion || assertion.localName !== 'Assertion' || assertion.namespaceURI !== SAML_NS)
    throw new Error('not a SAML Assertion');
  const destination = response.getAttribute('Destination');
  if (destination && destination !== callbackUrl)
    throw new Error('the response Destination is not this endpoint');
  const inResponseTo = response.getAttribute('InResponseTo');
  if (inResponseTo !== requestId) throw new Error('the response does not answer our request (InResponseTo)');
  const confirmations = Array.from(assertion.getElementsByTagNameNS(SAML_NS, 'SubjectConfirmationData'));
  const bearer = confirmations.filter((c) => c.getAttribute('Recipient') === callbackUrl);
  if (!bearer.length) throw new Error('the assertion Recipient is not this endpoint');
  for (const c of bearer) {
    const irt = c.getAttribute('InResponseTo');
    if (irt && irt !== requestId) throw new Error('the assertion does not answer our request (InResponseTo)');
  }
  const assertionId = assertion.getAttribute('ID');
  if (!assertionId) throw new Error('the assertion has no ID');
  const limits = [
    ...bearer.map((c) => c.getAttribute('NotOnOrAfter')),
    ...Array.from(assertion.getElementsByTagNameNS(SAML_NS, 'Conditions')).map((c) =>
      c.getAttribute('NotOnOrAfter'),
    ),
  ]
    .filter((v): v is string => !!v)
    .map((v) => Date.parse(v))
    .filter((n) => Number.isFinite(n));
  // Without any limit the assertion is kept for a day (node-saml would have refused it long before).
  const until = limits.length ? Math.min(...limits) : Date.now() + 24 * 3600_000;
  return { assertionId, notOnOrAfter: new Date(until + CLOCK_SKEW_MS) };
}

import * as client from 'openid-client';
import type { OidcSettings, ResolvedSsoConnection } from './sso-connection-service.ts';
import type { SsoIdentity } from './sso-identity.ts';

/**
 * OpenID Connect authorization code flow with PKCE (S256), state and nonce, through openid-client.
 * Non-repudiation checks are on: the ID token's signature is verified against the provider's JWKS
 * (besides issuer, audience, expiry, nonce and the code exchange itself).
 */

export interface OidcStart {
  url: string;
  nonce: string;
  codeVerifier: string;
}

async function configuration(conn: ResolvedSsoConnection): Promise<client.Configuration> {
  const s = conn.config as OidcSettings;
  const issuer = new URL(s.issuer);
  // Plain http is accepted only for loopback issuers (checked when the connection is saved).
  const insecure = issuer.protocol === 'http:';
  const config = await client.discovery(
    issuer,
    s.clientId,
    undefined,
    conn.clientSecret === undefined ? client.None() : client.ClientSecretBasic(conn.clientSecret),
    { execute: insecure ? [client.allowInsecureRequests] : [], timeout: 10 },
  );
  client.enableNonRepudiationChecks(config);
  return config;
}

export async function oidcStart(
  conn: ResolvedSsoConnection,
  redirectUri: string,
  state: string,
): Promise<OidcStart> {
  const s = conn.config as OidcSettings;
  const config = await configuration(conn);
  const codeVerifier = client.randomPKCECodeVerifier();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    response_type: 'code',
    scope: s.scopes ?? 'openid email profile',
    state,
    nonce,
    code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
    code_challenge_method: 'S256',
  });
  return { url: url.href, nonce, codeVerifier };
}

export async function oidcFinish(
  conn: ResolvedSsoConnection,
  redirectUri: string,
  query: Record<string, string>,
  checks: { state: string; nonce: string; codeVerifier: string },
): Promise<SsoIdentity> {
  const s = conn.config as OidcSettings;
  const config = await configuration(conn);
  const current = new URL(redirectUri);
  for (const [k, v] of Object.entries(query)) current.searchParams.set(k, v);
  const tokens = await client.authorizationCodeGrant(config, current, {
    pkceCodeVerifier: checks.codeVerifier,
    expectedState: checks.state,
    expectedNonce: checks.nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  if (!claims) throw new Error('the provider returned no ID token');
  const email = claims[s.emailClaim ?? 'email'];
  const name = claims[s.nameClaim ?? 'name'];
  const groupsClaim = conn.groupsAttribute ? claims[conn.groupsAttribute] : undefined;
  return {
    subject: claims.sub,
    email: typeof email === 'string' ? email : undefined,
    emailVerified: claims.email_verified !== false,
    name: typeof name === 'string' ? name : '',
    groups: Array.isArray(groupsClaim)
      ? groupsClaim.filter((g): g is string => typeof g === 'string')
      : typeof groupsClaim === 'string'
        ? [groupsClaim]
        : [],
  };
}

import { errors, jwtVerify, SignJWT } from 'jose';
import type { KeyObject } from 'node:crypto';
import type { MasterKey } from '../crypto/master-key.ts';
import { unauthenticated } from '../errors/app-error.ts';

export interface AccessClaims {
  userId: string;
  tenantId: string;
  sessionId: string;
}

export const ACCESS_TOKEN_AUDIENCE = 'steward-api';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Short-lived EdDSA (Ed25519) access tokens; the algorithm, issuer, audience and expiry are pinned. */
export class AccessTokens {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly issuer: string;
  readonly ttlSeconds: number;

  constructor(master: MasterKey, opts: { issuer: string; ttlSeconds?: number }) {
    const pair = master.signingKeyPair('access-tokens');
    this.#privateKey = pair.privateKey;
    this.#publicKey = pair.publicKey;
    this.issuer = opts.issuer;
    this.ttlSeconds = opts.ttlSeconds ?? 900;
  }

  publicKeyPem(): string {
    return this.#publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  issue(claims: AccessClaims): Promise<string> {
    return new SignJWT({ tid: claims.tenantId, sid: claims.sessionId })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'at+jwt' })
      .setSubject(claims.userId)
      .setIssuer(this.issuer)
      .setAudience(ACCESS_TOKEN_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSeconds}s`)
      .sign(this.#privateKey);
  }

  async verify(token: string): Promise<AccessClaims> {
    try {
      const { payload } = await jwtVerify(token, this.#publicKey, {
        algorithms: ['EdDSA'],
        issuer: this.issuer,
        audience: ACCESS_TOKEN_AUDIENCE,
        typ: 'at+jwt',
        requiredClaims: ['sub', 'exp', 'iat', 'tid', 'sid'],
        clockTolerance: 5,
      });
      const { sub, tid, sid } = payload as { sub?: unknown; tid?: unknown; sid?: unknown };
      if (typeof sub !== 'string' || typeof tid !== 'string' || typeof sid !== 'string')
        throw new Error('claims');
      if (!UUID.test(sub) || !UUID.test(tid) || !UUID.test(sid)) throw new Error('claims');
      return { userId: sub, tenantId: tid, sessionId: sid };
    } catch (error) {
      if (error instanceof errors.JWTExpired) throw unauthenticated('access token expired');
      throw unauthenticated('invalid access token');
    }
  }
}

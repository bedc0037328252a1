import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { credentialAad, open, seal, SecretUnreadableError, tenantKeyAad } from './envelope.ts';

const TENANT_A = '11111111-1111-4111-8111-111111111111';
const TENANT_B = '22222222-2222-4222-8222-222222222222';
const CRED_1 = '33333333-3333-4333-8333-333333333333';
const CRED_2 = '44444444-4444-4444-8444-444444444444';

describe('AES-256-GCM envelope', () => {
  const key = randomBytes(32);
  const secret = Buffer.from('hunter2 — a password with ünïcode');

  it('round-trips, with a fresh nonce every time', () => {
    const aad = credentialAad(TENANT_A, CRED_1);
    const a = seal(key, secret, aad);
    const b = seal(key, secret, aad);
    expect(a.nonce).toHaveLength(12);
    expect(a.ciphertext).toHaveLength(secret.length + 16);
    expect(a.nonce.equals(b.nonce)).toBe(false);
    expect(a.ciphertext.equals(b.ciphertext)).toBe(false);
    expect(a.ciphertext.includes(secret)).toBe(false);
    expect(open(key, a, aad).equals(secret)).toBe(true);
    expect(open(key, b, aad).equals(secret)).toBe(true);
  });

  it('fails on any tampered byte of ciphertext, tag or nonce', () => {
    const aad = credentialAad(TENANT_A, CRED_1);
    const sealed = seal(key, secret, aad);
    for (let i = 0; i < sealed.ciphertext.length; i++) {
      const ciphertext = Buffer.from(sealed.ciphertext);
      ciphertext[i]! ^= 0x01;
      expect(() => open(key, { ciphertext, nonce: sealed.nonce }, aad)).toThrow(SecretUnreadableError);
    }
    for (let i = 0; i < sealed.nonce.length; i++) {
      const nonce = Buffer.from(sealed.nonce);
      nonce[i]! ^= 0x80;
      expect(() => open(key, { ciphertext: sealed.ciphertext, nonce }, aad)).toThrow(SecretUnreadableError);
    }
    expect(() =>
      open(key, { ciphertext: sealed.ciphertext.subarray(0, 10), nonce: sealed.nonce }, aad),
    ).toThrow(SecretUnreadableError);
  });

  it('fails under another tenant, another credential or another key', () => {
    const sealed = seal(key, secret, credentialAad(TENANT_A, CRED_1));
    expect(() => open(key, sealed, credentialAad(TENANT_B, CRED_1))).toThrow(SecretUnreadableError);
    expect(() => open(key, sealed, credentialAad(TENANT_A, CRED_2))).toThrow(SecretUnreadableError);
    expect(() => open(randomBytes(32), sealed, credentialAad(TENANT_A, CRED_1))).toThrow(
      SecretUnreadableError,
    );
    // A wrapped data key is bound to its tenant too.
    const wrapped = seal(key, randomBytes(32), tenantKeyAad(TENANT_A));
    expect(() => open(key, wrapped, tenantKeyAad(TENANT_B))).toThrow(SecretUnreadableError);
    expect(open(key, wrapped, tenantKeyAad(TENANT_A))).toHaveLength(32);
  });

  it('says nothing about the secret when it fails', () => {
    const sealed = seal(key, secret, credentialAad(TENANT_A, CRED_1));
    try {
      open(key, sealed, credentialAad(TENANT_B, CRED_1));
      expect.unreachable();
    } catch (e) {
      expect(String((e as Error).message)).not.toContain('hunter2');
      expect((e as Error).cause).toBeUndefined();
    }
  });

  it('binds identifiers without ambiguity (uuids are case-normalised)', () => {
    expect(credentialAad(TENANT_A.toUpperCase(), CRED_1).equals(credentialAad(TENANT_A, CRED_1))).toBe(true);
    expect(credentialAad(TENANT_A, CRED_1).equals(credentialAad(CRED_1, TENANT_A))).toBe(false);
    expect(tenantKeyAad(TENANT_A).equals(credentialAad(TENANT_A, CRED_1))).toBe(false);
  });
});

import { createHash, timingSafeEqual } from 'node:crypto';
import { KeyUnwrapError } from './key-provider.ts';

/**
 * For providers without additional data of their own (Vault/OpenBao transit on every version):
 * the plaintext sent to the provider is SHA-256(aad) followed by the key, and unwrapping checks the
 * prefix, so a wrapped key moved to another tenant's row is refused.
 */
export function bindAad(plaintext: Buffer, aad: Buffer): Buffer {
  return Buffer.concat([createHash('sha256').update(aad).digest(), plaintext]);
}

export function unbindAad(bound: Buffer, aad: Buffer): Buffer {
  const want = createHash('sha256').update(aad).digest();
  if (bound.length <= want.length || !timingSafeEqual(bound.subarray(0, want.length), want)) {
    throw new KeyUnwrapError('additional data does not match');
  }
  return Buffer.from(bound.subarray(want.length));
}

/**
 * A key provider wraps and unwraps tenant data keys under a key-encryption key it holds (a local
 * key, a Vault/OpenBao transit key, an AWS KMS key or a key object in a PKCS#11 token). The
 * additional data (the tenant id) is bound to every wrap: a wrapped key moved to another tenant's
 * row does not unwrap.
 */
export type KeyProviderName = 'local' | 'vault' | 'aws-kms' | 'pkcs11';

export const KEY_PROVIDER_NAMES: readonly KeyProviderName[] = ['local', 'vault', 'aws-kms', 'pkcs11'];

/** Which key (and which version of it) wrapped a data key. */
export interface KeyRef {
  provider: KeyProviderName;
  keyId: string;
  keyVersion: number;
}

/** A wrapped data key as stored in tenant_keys. */
export interface WrappedKey extends KeyRef {
  ciphertext: Buffer;
  /** Providers that return the nonce inside their ciphertext leave this null. */
  nonce: Buffer | null;
  /**
   * Set when the wrapped plaintext is the data key sealed under the tenant's KEK of this keystore
   * (tenant-keystore.ts), not the data key itself. Null/absent: wrapped before keystores existed.
   */
  tenantKek?: string | null;
}

export interface KeyProvider {
  readonly name: KeyProviderName;
  /** The key and version new data keys are wrapped with. */
  current(): Promise<KeyRef>;
  wrap(plaintext: Buffer, aad: Buffer): Promise<WrappedKey>;
  /** Throws KeyUnwrapError when the key does not open (tampered, moved, or unknown version). */
  unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer>;
  /**
   * Re-wrap under the current version without the plaintext leaving the provider when it can
   * (Vault rewrap, KMS ReEncrypt). Absent: the caller unwraps and wraps.
   */
  rewrap?(wrapped: WrappedKey, aad: Buffer): Promise<WrappedKey>;
  /** Create a new key version and make it current; older versions stay usable for unwrap. */
  rotate(): Promise<KeyRef>;
  /**
   * Make versions older than the current one unusable (after every data key was re-wrapped), so that
   * wrapped keys in old database backups no longer unwrap. Returns what was retired, or a reason
   * why this provider cannot do it from here.
   */
  retireOldVersions?(): Promise<{ retired: number[] } | { unsupported: string }>;
  close?(): Promise<void>;
}

/** A wrapped key that does not unwrap. Says nothing more (no provider detail reaches callers). */
export class KeyUnwrapError extends Error {
  constructor(readonly reason: string) {
    super('a data key could not be unwrapped');
    this.name = 'KeyUnwrapError';
  }
}

/** True when `wrapped` is not under the provider's current key (rotation must re-wrap it). */
export function isStale(wrapped: KeyRef, current: KeyRef): boolean {
  return (
    wrapped.provider !== current.provider ||
    wrapped.keyId !== current.keyId ||
    wrapped.keyVersion < current.keyVersion
  );
}

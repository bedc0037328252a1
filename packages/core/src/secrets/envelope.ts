import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import type { MasterKey } from '../crypto/master-key.ts';
import { KeyUnwrapError, type KeyProviderName, type WrappedKey } from '../keys/key-provider.ts';
import { keyProvidersFor, type KeyProviders } from '../keys/key-providers.ts';

/**
 * Envelope encryption for connector credentials.
 *
 * - Each tenant has its own random 32-byte data key, stored in `tenant_keys` only wrapped by a
 *   key-encryption key (KEK) held by a key provider (packages/core/src/keys/: by default the local
 *   provider, whose version 1 is derived from the master key; or Vault/OpenBao transit, AWS KMS,
 *   PKCS#11), with additional data = the tenant id, so a wrapped key copied to another tenant's row
 *   does not unwrap. With a tenant keystore (the runtime always has one), the data key is first
 *   sealed under the tenant's own KEK kept outside the database (keys/tenant-keystore.ts), which
 *   erasure destroys: database backups then hold nothing that opens the tenant's data.
 * - A credential is AES-256-GCM ciphertext under its tenant's data key, with additional data binding
 *   the tenant id and the credential id: ciphertext moved to another credential or tenant fails to
 *   decrypt instead of handing out the wrong secret.
 */

const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;

/** AES-256-GCM output: the ciphertext with its 16-byte tag appended, and the 12-byte random nonce. */
export interface Sealed {
  ciphertext: Buffer;
  nonce: Buffer;
}

/** A sealed value that does not open (tampered, moved, or under another key). Says nothing more. */
export class SecretUnreadableError extends Error {
  constructor() {
    super('a stored secret could not be decrypted');
    this.name = 'SecretUnreadableError';
  }
}

export function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Sealed {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
  return { ciphertext, nonce };
}

export function open(key: Buffer, sealed: Sealed, aad: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new Error('AES-256-GCM needs a 32-byte key');
  const { ciphertext, nonce } = sealed;
  if (nonce.length !== NONCE_BYTES || ciphertext.length < TAG_BYTES) throw new SecretUnreadableError();
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
    decipher.setAAD(aad);
    decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
    return Buffer.concat([
      decipher.update(ciphertext.subarray(0, ciphertext.length - TAG_BYTES)),
      decipher.final(),
    ]);
  } catch {
    throw new SecretUnreadableError();
  }
}

/** Additional data of a tenant's wrapped data key. */
export function tenantKeyAad(tenantId: string): Buffer {
  return Buffer.from(`steward:tenant-data-key:v1:${tenantId.toLowerCase()}`);
}

/** Additional data of one credential: its tenant and its own id. */
export function credentialAad(tenantId: string, credentialId: string): Buffer {
  return Buffer.from(`steward:credential:v1:${tenantId.toLowerCase()}:${credentialId.toLowerCase()}`);
}

/** Encrypts and decrypts credentials under per-tenant data keys (see the comment at the top). */
export class CredentialVault {
  readonly #master: MasterKey;

  constructor(master: MasterKey) {
    this.#master = master;
  }

  get #providers(): KeyProviders {
    return keyProvidersFor(this.#master);
  }

  /** The tenant's data key, created (and stored wrapped) on first use. `tx` must be scoped to the tenant. */
  async dataKey(tx: Tx, tenantId: string): Promise<Buffer> {
    const existing = await this.#readKey(tx, tenantId);
    if (existing) return existing;
    const key = randomBytes(KEY_BYTES);
    const wrapped = await this.#providers.wrapDataKey(tenantId, key, tenantKeyAad(tenantId));
    const [inserted] = await tx`
      insert into tenant_keys (tenant_id, wrapped_key, nonce, key_provider, key_id, key_version, tenant_kek)
      values (${tenantId}, ${wrapped.ciphertext}, ${wrapped.nonce}, ${wrapped.provider}, ${wrapped.keyId},
        ${wrapped.keyVersion}, ${wrapped.tenantKek ?? null})
      on conflict (tenant_id) do nothing returning tenant_id`;
    if (inserted) return key;
    // Another transaction created the key at the same moment: use that one.
    const raced = await this.#readKey(tx, tenantId);
    if (!raced) throw new Error('the tenant data key could not be created');
    return raced;
  }

  async encrypt(tx: Tx, tenantId: string, credentialId: string, plaintext: string): Promise<Sealed> {
    const key = await this.dataKey(tx, tenantId);
    return seal(key, Buffer.from(plaintext, 'utf8'), credentialAad(tenantId, credentialId));
  }

  async decrypt(tx: Tx, tenantId: string, credentialId: string, sealed: Sealed): Promise<string> {
    const key = await this.#readKey(tx, tenantId);
    if (!key) throw new SecretUnreadableError();
    return open(key, sealed, credentialAad(tenantId, credentialId)).toString('utf8');
  }

  async #readKey(tx: Tx, tenantId: string): Promise<Buffer | undefined> {
    const wrapped = await readWrappedKey(tx, tenantId);
    if (!wrapped) return undefined;
    try {
      return await this.#providers.unwrapCached(tenantId, wrapped, tenantKeyAad(tenantId));
    } catch (error) {
      if (error instanceof KeyUnwrapError) throw new SecretUnreadableError();
      throw error;
    }
  }

  toJSON(): string {
    return '[credential vault]';
  }
}

/** The tenant's wrapped data key as stored (`tx` scoped to the tenant). */
export async function readWrappedKey(tx: Tx, tenantId: string): Promise<WrappedKey | undefined> {
  const [row] = await tx<
    {
      wrapped_key: Buffer;
      nonce: Buffer | null;
      key_provider: KeyProviderName;
      key_id: string;
      key_version: number;
      tenant_kek: string | null;
    }[]
  >`select wrapped_key, nonce, key_provider, key_id, key_version, tenant_kek from tenant_keys where tenant_id = ${tenantId}`;
  if (!row) return undefined;
  return {
    provider: row.key_provider,
    keyId: row.key_id,
    keyVersion: row.key_version,
    ciphertext: row.wrapped_key,
    nonce: row.nonce,
    tenantKek: row.tenant_kek,
  };
}

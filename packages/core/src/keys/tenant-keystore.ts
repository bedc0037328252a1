import { randomBytes } from 'node:crypto';
import { link, mkdir, open as openFile, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KEYSTORE_DIR } from '@steward/db/backup';
import type { MasterKey } from '../crypto/master-key.ts';
import { open, seal, SecretUnreadableError } from '../secrets/envelope.ts';
import { KeyUnwrapError } from './key-provider.ts';

export { KEYSTORE_DIR };

/**
 * Per-tenant key-encryption keys kept OUTSIDE the database, so that crypto-shredding holds against
 * database backups: a tenant's data key is sealed under its tenant KEK first and only then wrapped
 * by the key provider (local, Vault, KMS, PKCS#11), and the wrapped result is what tenant_keys
 * stores. Erasing the tenant destroys its KEK, which no database dump holds: a restored backup
 * still has the wrapped key, but it no longer opens, whatever master key or provider survives.
 *
 * `steward backup` leaves the keystore out of its archive; the keystore is backed up separately
 * (README, "Backups and keys"), so that key backups can be re-taken and their older copies
 * destroyed after an erasure.
 */
export interface TenantKeystore {
  /** Stored in tenant_keys.tenant_kek for data keys sealed under a KEK of this keystore. */
  readonly id: string;
  /** The tenant's KEK, created when absent (two processes creating it at once agree on one). */
  getOrCreate(tenantId: string): Promise<Buffer>;
  /** The tenant's KEK, or undefined when it was destroyed (or never existed). */
  get(tenantId: string): Promise<Buffer | undefined>;
  /** Destroy the tenant's KEK; true when there was one. */
  destroy(tenantId: string): Promise<boolean>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const FORMAT = 1;
const KEY_BYTES = 32;

function fileKeyAad(tenantId: string): Buffer {
  return Buffer.from(`steward:tenant-kek-file:v1:${tenantId}`);
}

/**
 * The default keystore: one file per tenant in `<dataDir>/keystore/<tenantId>.key` (mode 0600, the
 * folder 0700): a random 32-byte KEK, sealed (AES-256-GCM) under a key derived from the master key,
 * so the folder alone is worth nothing. Every instance of an installation must see the same folder
 * (as it already does for tenant files).
 */
export class FileTenantKeystore implements TenantKeystore {
  readonly id = 'file:v1';
  readonly #dir: string;
  readonly #master: MasterKey;

  constructor(dir: string, master: MasterKey) {
    this.#dir = dir;
    this.#master = master;
  }

  static inDataDir(dataDir: string, master: MasterKey): FileTenantKeystore {
    return new FileTenantKeystore(path.join(dataDir, KEYSTORE_DIR), master);
  }

  #file(tenantId: string): string {
    const id = tenantId.toLowerCase();
    if (!UUID.test(id)) throw new Error('a tenant id must be a uuid');
    return path.join(this.#dir, `${id}.key`);
  }

  async get(tenantId: string): Promise<Buffer | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.#file(tenantId));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (bytes.length !== 1 + 12 + KEY_BYTES + 16 || bytes[0] !== FORMAT) {
      throw new KeyUnwrapError('tenant key file is damaged');
    }
    try {
      return open(
        this.#sealingKey(),
        { nonce: bytes.subarray(1, 13), ciphertext: bytes.subarray(13) },
        fileKeyAad(tenantId.toLowerCase()),
      );
    } catch (error) {
      if (error instanceof SecretUnreadableError) throw new KeyUnwrapError('tenant key file does not open');
      throw error;
    }
  }

  async getOrCreate(tenantId: string): Promise<Buffer> {
    const existing = await this.get(tenantId);
    if (existing) return existing;
    const file = this.#file(tenantId);
    await mkdir(this.#dir, { recursive: true, mode: 0o700 });
    const sealed = seal(this.#sealingKey(), randomBytes(KEY_BYTES), fileKeyAad(tenantId.toLowerCase()));
    const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
    await writeFile(tmp, Buffer.concat([Buffer.from([FORMAT]), sealed.nonce, sealed.ciphertext]), {
      mode: 0o600,
      flag: 'wx',
    });
    try {
      // link() never replaces: whoever links first wins, and everyone reads the winner's key.
      await link(tmp, file).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
    } finally {
      await unlink(tmp).catch(() => {});
    }
    const key = await this.get(tenantId);
    if (!key) throw new Error('the tenant key file could not be created');
    return key;
  }

  async destroy(tenantId: string): Promise<boolean> {
    const file = this.#file(tenantId);
    let handle;
    try {
      handle = await openFile(file, 'r+');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw error;
    }
    try {
      // Overwrite before unlinking (helps on plain file systems; copy-on-write ones and SSDs may keep
      // old blocks, which is why the file is sealed under the master key as well).
      const { size } = await handle.stat();
      await handle.write(randomBytes(Math.max(size, 1)), 0, Math.max(size, 1), 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rm(file, { force: true });
    return true;
  }

  #sealingKey(): Buffer {
    return this.#master.derive('tenant-keystore');
  }

  toJSON(): string {
    return '[tenant keystore]';
  }
}

/** An in-memory keystore (unit tests). */
export function memoryTenantKeystore(): TenantKeystore {
  const keys = new Map<string, Buffer>();
  return {
    id: 'memory',
    async get(tenantId) {
      return keys.get(tenantId.toLowerCase());
    },
    async getOrCreate(tenantId) {
      const id = tenantId.toLowerCase();
      if (!keys.has(id)) keys.set(id, randomBytes(KEY_BYTES));
      return keys.get(id)!;
    },
    async destroy(tenantId) {
      return keys.delete(tenantId.toLowerCase());
    },
  };
}

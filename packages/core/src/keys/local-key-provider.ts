import { randomBytes } from 'node:crypto';
import type { MasterKey } from '../crypto/master-key.ts';
import { open, seal, SecretUnreadableError } from '../secrets/envelope.ts';
import { KeyUnwrapError, type KeyProvider, type KeyRef, type WrappedKey } from './key-provider.ts';
import type { KeyRingStore } from './key-ring-store.ts';

const KEY_ID = 'tenant-kek';

/**
 * The default provider: key-encryption keys on this installation. Version 1 is derived from the
 * master key (exactly the key every data key was wrapped with before key providers existed, so
 * existing data stays readable); each rotation adds a random 32-byte key, stored in key_ring sealed
 * under another key derived from the master key.
 */
export class LocalKeyProvider implements KeyProvider {
  readonly name = 'local' as const;
  readonly #master: MasterKey;
  readonly #ring: KeyRingStore;
  readonly #keys = new Map<number, Buffer>();
  #current = 1;
  #loaded: Promise<void> | undefined;

  constructor(master: MasterKey, ring: KeyRingStore) {
    this.#master = master;
    this.#ring = ring;
    this.#keys.set(1, master.derive('tenant-kek'));
  }

  async current(): Promise<KeyRef> {
    await this.#load();
    return { provider: 'local', keyId: KEY_ID, keyVersion: this.#current };
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<WrappedKey> {
    const ref = await this.current();
    const sealed = seal(this.#keys.get(ref.keyVersion)!, plaintext, aad);
    return { ...ref, ciphertext: sealed.ciphertext, nonce: sealed.nonce };
  }

  async unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    if (wrapped.provider !== 'local' || wrapped.keyId !== KEY_ID || !wrapped.nonce) {
      throw new KeyUnwrapError('not a local key');
    }
    let key = this.#keys.get(wrapped.keyVersion);
    if (!key) {
      this.#loaded = undefined; // another process rotated: reload the ring
      await this.#load();
      key = this.#keys.get(wrapped.keyVersion);
    }
    if (!key) throw new KeyUnwrapError(`unknown local key version ${wrapped.keyVersion}`);
    try {
      return open(key, { ciphertext: wrapped.ciphertext, nonce: wrapped.nonce }, aad);
    } catch (error) {
      if (error instanceof SecretUnreadableError) throw new KeyUnwrapError('local unwrap failed');
      throw error;
    }
  }

  async rotate(): Promise<KeyRef> {
    this.#loaded = undefined;
    await this.#load();
    const version = this.#current + 1;
    const key = randomBytes(32);
    const sealed = seal(this.#ringKey(), key, ringAad(version));
    await this.#ring.add('local', {
      version,
      keyId: KEY_ID,
      material: sealed.ciphertext,
      nonce: sealed.nonce,
    });
    this.#loaded = undefined;
    return this.current();
  }

  async retireOldVersions(): Promise<{ unsupported: string }> {
    return {
      unsupported:
        'the local key ring lives in the database and its root is the master key, so its old versions are in every backup: crypto-shredding against old backups needs a remote provider (vault, pkcs11, aws-kms)',
    };
  }

  #ringKey(): Buffer {
    return this.#master.derive('local-key-ring');
  }

  #load(): Promise<void> {
    this.#loaded ??= (async () => {
      for (const e of await this.#ring.list('local')) {
        if (!e.material || !e.nonce) continue;
        if (!this.#keys.has(e.version)) {
          this.#keys.set(
            e.version,
            open(this.#ringKey(), { ciphertext: e.material, nonce: e.nonce }, ringAad(e.version)),
          );
        }
        this.#current = Math.max(this.#current, e.version);
      }
    })().catch((error: unknown) => {
      this.#loaded = undefined;
      throw error;
    });
    return this.#loaded;
  }

  toJSON(): string {
    return '[local key provider]';
  }
}

function ringAad(version: number): Buffer {
  return Buffer.from(`steward:local-kek:v${version}`);
}

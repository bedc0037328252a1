import type { MasterKey } from '../crypto/master-key.ts';
import { KeyUnwrapError, type KeyProvider, type KeyProviderName, type WrappedKey } from './key-provider.ts';
import { memoryKeyRing, type KeyRingStore } from './key-ring-store.ts';
import { LocalKeyProvider } from './local-key-provider.ts';
import { open, seal, SecretUnreadableError } from '../secrets/envelope.ts';
import type { TenantKeystore } from './tenant-keystore.ts';

/**
 * The providers of an installation: the active one wraps new data keys; the local one is always
 * there too, so data keys wrapped before switching to a remote provider stay readable until
 * `steward keys rotate` has moved them.
 */
export class KeyProviders {
  readonly active: KeyProvider;
  readonly local: LocalKeyProvider;
  /**
   * Unwrapped data keys by tenant and wrapped bytes, for five minutes (a remote unwrap per credential
   * read would be slow). Cleared for a tenant by its erasure, entirely when key versions are retired.
   */
  readonly #cache = new Map<string, { key: Buffer; until: number }>();

  /**
   * Per-tenant KEKs outside the database (tenant-keystore.ts). When set, every new data key is sealed
   * under its tenant's KEK before the provider wraps it, so erasure (which destroys the KEK) also
   * shreds the copies of the wrapped key in database backups.
   */
  readonly tenantKeys: TenantKeystore | undefined;

  constructor(local: LocalKeyProvider, active?: KeyProvider, tenantKeys?: TenantKeystore) {
    this.local = local;
    this.active = active ?? local;
    this.tenantKeys = tenantKeys;
  }

  get(name: KeyProviderName): KeyProvider | undefined {
    if (name === this.active.name) return this.active;
    if (name === 'local') return this.local;
    return undefined;
  }

  async unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    const provider = this.get(wrapped.provider);
    if (!provider) throw new KeyUnwrapError(`key provider ${wrapped.provider} is not configured`);
    return provider.unwrap(wrapped, aad);
  }

  /** Wrap a new data key: sealed under the tenant's KEK (when there is a keystore), then by the provider. */
  async wrapDataKey(tenantId: string, key: Buffer, aad: Buffer): Promise<WrappedKey> {
    if (!this.tenantKeys) return { ...(await this.active.wrap(key, aad)), tenantKek: null };
    const inner = await this.#sealUnderTenantKek(tenantId, key, aad);
    return { ...(await this.active.wrap(inner, aad)), tenantKek: this.tenantKeys.id };
  }

  /**
   * A data key wrapped before the keystore existed, re-wrapped with its tenant KEK layer added (key
   * rotation does this, so older installations get crypto-shredding against backups too).
   */
  async addTenantLayer(tenantId: string, wrapped: WrappedKey, aad: Buffer): Promise<WrappedKey> {
    if (!this.tenantKeys || wrapped.tenantKek) throw new Error('the data key has its tenant layer already');
    const key = await this.unwrap(wrapped, aad);
    try {
      return await this.wrapDataKey(tenantId, key, aad);
    } finally {
      key.fill(0);
    }
  }

  /** Unwrap through the cache (see above), opening the tenant KEK layer where the key has one. */
  async unwrapCached(tenantId: string, wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    const k = `${tenantId}:${wrapped.provider}:${wrapped.keyVersion}:${wrapped.ciphertext.toString('base64')}`;
    const hit = this.#cache.get(k);
    if (hit && hit.until > Date.now()) return hit.key;
    const outer = await this.unwrap(wrapped, aad);
    const key = wrapped.tenantKek
      ? await this.#openTenantLayer(tenantId, wrapped.tenantKek, outer, aad)
      : outer;
    // A layered key whose marker was dropped (or any other damage) is not a data key: refuse it.
    if (key.length !== 32) throw new KeyUnwrapError('not a data key');
    if (this.#cache.size >= 1000) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(k, { key, until: Date.now() + 5 * 60_000 });
    return key;
  }

  async #sealUnderTenantKek(tenantId: string, key: Buffer, aad: Buffer): Promise<Buffer> {
    const kek = await this.tenantKeys!.getOrCreate(tenantId);
    const sealed = seal(kek, key, aad);
    return Buffer.concat([sealed.nonce, sealed.ciphertext]);
  }

  async #openTenantLayer(tenantId: string, kekId: string, inner: Buffer, aad: Buffer): Promise<Buffer> {
    if (!this.tenantKeys || this.tenantKeys.id !== kekId) {
      throw new KeyUnwrapError(`the tenant keystore ${kekId} is not configured`);
    }
    const kek = await this.tenantKeys.get(tenantId);
    if (!kek) throw new KeyUnwrapError('the tenant key-encryption key was destroyed');
    try {
      return open(kek, { nonce: inner.subarray(0, 12), ciphertext: inner.subarray(12) }, aad);
    } catch (error) {
      if (error instanceof SecretUnreadableError) throw new KeyUnwrapError('tenant layer does not open');
      throw error;
    } finally {
      inner.fill(0);
    }
  }

  /** Destroy a tenant's KEK (erasure) and its cached data key; true when there was a KEK. */
  async destroyTenantKek(tenantId: string): Promise<boolean> {
    this.forget(tenantId);
    return (await this.tenantKeys?.destroy(tenantId)) ?? false;
  }

  /** Drop cached data keys: one tenant's, or all. */
  forget(tenantId?: string): void {
    for (const k of [...this.#cache.keys()]) {
      if (!tenantId || k.startsWith(`${tenantId}:`)) {
        this.#cache.delete(k);
      }
    }
  }

  async close(): Promise<void> {
    if (this.active !== this.local) await this.active.close?.();
  }

  toJSON(): string {
    return `[key providers: ${this.active.name}]`;
  }
}

const registry = new WeakMap<MasterKey, KeyProviders>();

/** Make `providers` the key providers of every credential vault of this master key (runtime wiring). */
export function registerKeyProviders(master: MasterKey, providers: KeyProviders): void {
  registry.set(master, providers);
}

/**
 * The registered providers, or the local provider alone (with an in-memory key ring: version 1 only,
 * and no tenant keystore: data keys wrapped this way have no layer outside the database).
 */
export function keyProvidersFor(master: MasterKey, ring?: KeyRingStore): KeyProviders {
  let p = registry.get(master);
  if (!p) {
    p = new KeyProviders(new LocalKeyProvider(master, ring ?? memoryKeyRing()));
    registry.set(master, p);
  }
  return p;
}

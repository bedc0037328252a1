import type { MasterKey } from '../crypto/master-key.ts';
import { KeyUnwrapError, type KeyProvider, type KeyProviderName, type WrappedKey } from './key-provider.ts';
import { memoryKeyRing, type KeyRingStore } from './key-ring-store.ts';
import { LocalKeyProvider } from './local-key-provider.ts';

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

  constructor(local: LocalKeyProvider, active?: KeyProvider) {
    this.local = local;
    this.active = active ?? local;
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

  /** Unwrap through the cache (see above). */
  async unwrapCached(tenantId: string, wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    const k = `${tenantId}:${wrapped.provider}:${wrapped.keyVersion}:${wrapped.ciphertext.toString('base64')}`;
    const hit = this.#cache.get(k);
    if (hit && hit.until > Date.now()) return hit.key;
    const key = await this.unwrap(wrapped, aad);
    if (this.#cache.size >= 1000) this.#cache.delete(this.#cache.keys().next().value!);
    this.#cache.set(k, { key, until: Date.now() + 5 * 60_000 });
    return key;
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

/** The registered providers, or the local provider alone (with an in-memory key ring: version 1 only). */
export function keyProvidersFor(master: MasterKey, ring?: KeyRingStore): KeyProviders {
  let p = registry.get(master);
  if (!p) {
    p = new KeyProviders(new LocalKeyProvider(master, ring ?? memoryKeyRing()));
    registry.set(master, p);
  }
  return p;
}

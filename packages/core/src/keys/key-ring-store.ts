import type { Database } from '@steward/db/database';
import type { KeyProviderName } from './key-provider.ts';

/** One row of key_ring: a key version of a provider (version 1 of every provider has no row). */
export interface KeyRingEntry {
  version: number;
  keyId: string;
  material: Buffer | null;
  nonce: Buffer | null;
}

/** The key versions of each provider, in the database so every process agrees on the current one. */
export interface KeyRingStore {
  list(provider: KeyProviderName): Promise<KeyRingEntry[]>;
  /** Insert a version; false when that version exists already (another rotation won). */
  add(provider: KeyProviderName, entry: KeyRingEntry): Promise<boolean>;
}

export function databaseKeyRing(db: Database): KeyRingStore {
  return {
    async list(provider) {
      const rows = await db.withSystemAccess(
        (tx) => tx<{ version: number; key_id: string; material: Buffer | null; nonce: Buffer | null }[]>`
          select version, key_id, material, nonce from key_ring where provider = ${provider} order by version`,
      );
      return rows.map((r) => ({ version: r.version, keyId: r.key_id, material: r.material, nonce: r.nonce }));
    },
    async add(provider, e) {
      const rows = await db.withSystemAccess(
        (tx) => tx`
          insert into key_ring (provider, version, key_id, material, nonce)
          values (${provider}, ${e.version}, ${e.keyId}, ${e.material}, ${e.nonce})
          on conflict do nothing returning version`,
      );
      return rows.length > 0;
    },
  };
}

/** An in-memory key ring (unit tests of providers). */
export function memoryKeyRing(): KeyRingStore {
  const rows = new Map<string, KeyRingEntry[]>();
  return {
    async list(provider) {
      return [...(rows.get(provider) ?? [])].sort((a, b) => a.version - b.version);
    },
    async add(provider, e) {
      const list = rows.get(provider) ?? [];
      if (list.some((r) => r.version === e.version)) return false;
      list.push(e);
      rows.set(provider, list);
      return true;
    },
  };
}

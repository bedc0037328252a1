import type { Resources } from '../resources.ts';
import { Leadership } from '../watchers/leases.ts';
import { VaultSyncer, type VaultSyncerOptions } from './vault-syncer.ts';

export interface VaultHandle {
  stop(): Promise<void>;
}

/**
 * The vault mirror of every tenant, in whichever process holds the `vault` lease: with several
 * Steward processes, exactly one writes the vaults and decides the notes people move.
 */
export function startVault(
  res: Resources,
  opts: {
    leaseMs: number;
    log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  } & VaultSyncerOptions,
): VaultHandle {
  const leadership = new Leadership({
    db: res.db,
    name: 'vault',
    ttlMs: opts.leaseMs,
    ...(opts.log ? { log: opts.log } : {}),
    lead: async () => {
      const syncer = new VaultSyncer(res, opts);
      await syncer.start();
      return () => syncer.stop();
    },
  });
  leadership.start();
  return { stop: () => leadership.stop() };
}

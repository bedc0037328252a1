import { PLATFORM_TENANT_ID } from '../audit/audit-log.ts';
import { conflict } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { readWrappedKey, tenantKeyAad } from '../secrets/envelope.ts';
import { isStale, type KeyRef, type WrappedKey } from './key-provider.ts';
import type { KeyProviders } from './key-providers.ts';

export interface RotationReport {
  provider: string;
  keyId: string;
  /** The key version every data key is wrapped with now. */
  keyVersion: number;
  /** True when this run finished an earlier, interrupted rotation instead of starting a new version. */
  resumed: boolean;
  tenants: number;
  rewrapped: number;
  failed: { tenantId: string; error: string }[];
}

/**
 * Master-key rotation without downtime. If every data key is under the current key version, the
 * provider creates a new version; then every data key not under the current version is re-wrapped,
 * one tenant per short transaction (the data key itself, and so every credential encrypted with it,
 * is unchanged). Readers keep working throughout: both versions unwrap. Interrupted, the next run
 * finds the stale keys and finishes (it does not start yet another version).
 */
export async function rotateKeys(
  res: Resources,
  providers: KeyProviders,
  actor: Actor,
  onProgress?: (done: number, total: number) => void,
): Promise<RotationReport> {
  const tenants = await res.db.withSystemAccess((tx) =>
    tx<{ id: string }[]>`select id from tenants where id <> ${PLATFORM_TENANT_ID} order by id`.then((r) =>
      r.map((t) => t.id),
    ),
  );
  let current = await providers.active.current();
  const stale = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const id of tenants) {
      const w = await res.db.withTenant(id, (tx) => readWrappedKey(tx, id));
      if (w && isStale(w, current)) out.push(id);
    }
    return out;
  };
  let todo = await stale();
  const resumed = todo.length > 0;
  const from = current;
  if (!resumed) {
    current = await providers.active.rotate();
    todo = await stale();
  }
  await platformAudit(res, actor, 'keys.rotation_started', {
    ...ref(current),
    from: ref(from),
    resumed,
    tenants: todo.length,
  });

  const report: RotationReport = {
    ...ref(current),
    resumed,
    tenants: tenants.length,
    rewrapped: 0,
    failed: [],
  };
  let done = 0;
  for (const tenantId of todo) {
    try {
      const changed = await res.db.withTenant(tenantId, async (tx) => {
        const [row] = await tx`select 1 from tenant_keys where tenant_id = ${tenantId} for update`;
        const wrapped = row ? await readWrappedKey(tx, tenantId) : undefined;
        if (!wrapped || !isStale(wrapped, current)) return false; // another run did it
        // A data key from before tenant keystores gets its tenant KEK layer on the way.
        const next =
          providers.tenantKeys && !wrapped.tenantKek
            ? await providers.addTenantLayer(tenantId, wrapped, tenantKeyAad(tenantId))
            : { ...(await rewrap(providers, wrapped, tenantKeyAad(tenantId))), tenantKek: wrapped.tenantKek };
        await tx`
          update tenant_keys set wrapped_key = ${next.ciphertext}, nonce = ${next.nonce},
            key_provider = ${next.provider}, key_id = ${next.keyId}, key_version = ${next.keyVersion},
            tenant_kek = ${next.tenantKek ?? null}, rewrapped_at = now()
          where tenant_id = ${tenantId}`;
        await res.audit.append(tx, tenantId, {
          ...auditActor(actor),
          action: 'keys.data_key_rewrapped',
          targetType: 'tenant_key',
          targetId: tenantId,
          details: { from: ref(wrapped), to: ref(next), tenantKek: next.tenantKek ?? null },
        });
        return true;
      });
      if (changed) report.rewrapped++;
    } catch (error) {
      report.failed.push({ tenantId, error: (error as Error).message });
    }
    onProgress?.(++done, todo.length);
  }
  await platformAudit(
    res,
    actor,
    'keys.rotated',
    { ...ref(current), resumed, rewrapped: report.rewrapped, failed: report.failed.length },
    report.failed.length ? 'failure' : 'success',
  );
  return report;
}

/** Re-wrap one data key under the active provider's current key. */
async function rewrap(providers: KeyProviders, wrapped: WrappedKey, aad: Buffer): Promise<WrappedKey> {
  const active = providers.active;
  if (wrapped.provider === active.name && active.rewrap) return active.rewrap(wrapped, aad);
  const key = await providers.unwrap(wrapped, aad);
  try {
    return await active.wrap(key, aad);
  } finally {
    key.fill(0);
  }
}

function ref(r: KeyRef): { provider: string; keyId: string; keyVersion: number } {
  return { provider: r.provider, keyId: r.keyId, keyVersion: r.keyVersion };
}

async function platformAudit(
  res: Resources,
  actor: Actor,
  action: string,
  details: Record<string, unknown>,
  outcome: 'success' | 'failure' = 'success',
): Promise<void> {
  await res.db.withSystemAccess(
    (tx) =>
      res.audit.append(tx, PLATFORM_TENANT_ID, {
        ...auditActor(actor),
        action,
        targetType: 'key_provider',
        outcome,
        details,
      }),
    { tenantId: PLATFORM_TENANT_ID },
  );
}

/** Where every tenant's data key stands (for `steward keys status`). */
export async function keyStatus(
  res: Resources,
  providers: KeyProviders,
): Promise<{ current: KeyRef; tenants: number; stale: number; byVersion: Record<string, number> }> {
  const current = await providers.active.current();
  const tenants = await res.db.withSystemAccess((tx) =>
    tx<{ id: string }[]>`select id from tenants where id <> ${PLATFORM_TENANT_ID}`.then((r) =>
      r.map((t) => t.id),
    ),
  );
  const byVersion: Record<string, number> = {};
  let stale = 0;
  for (const id of tenants) {
    const w = await res.db.withTenant(id, (tx) => readWrappedKey(tx, id));
    if (!w) continue;
    const k = `${w.provider}:${w.keyId}:v${w.keyVersion}`;
    byVersion[k] = (byVersion[k] ?? 0) + 1;
    if (isStale(w, current)) stale++;
  }
  return { current, tenants: tenants.length, stale, byVersion };
}

/**
 * Retire every key version older than the current one in the provider, once no data key needs them
 * (all re-wrapped). Afterwards wrapped keys copied into older backups no longer unwrap: together with
 * erasure's deletion of a tenant's data key, this extends crypto-shredding to those backups.
 */
export async function retireOldKeyVersions(
  res: Resources,
  providers: KeyProviders,
  actor: Actor,
): Promise<{ provider: string; retired: number[] } | { provider: string; unsupported: string }> {
  const status = await keyStatus(res, providers);
  const provider = providers.active.name;
  if (status.stale > 0) {
    throw conflict(
      `${status.stale} data keys are not yet under the current key version: run steward keys rotate first`,
    );
  }
  const result = providers.active.retireOldVersions
    ? await providers.active.retireOldVersions()
    : { unsupported: 'this provider cannot retire key versions' };
  providers.forget();
  await platformAudit(
    res,
    actor,
    'keys.versions_retired',
    { provider, ...result },
    'retired' in result ? 'success' : 'failure',
  );
  return { provider, ...result };
}

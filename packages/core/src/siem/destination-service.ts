import { randomUUID } from 'node:crypto';
import type { Tx } from '@steward/db/database';
import { vaultFor } from '../connections/connection-service.ts';
import { conflict, fromDatabaseError, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import {
  siemConfigProblems,
  type ResolvedDestination,
  type SiemConfig,
  type SiemKind,
} from './siem-destination.ts';
import { sealedColumnUpdate } from '../secrets/sealed-column.ts';
import { mergeConfig } from '../shared/merge-config.ts';

/**
 * A tenant's SIEM destinations. The secret (the HTTPS token) is write-only: stored encrypted under
 * the tenant's envelope key, never returned (views say `hasSecret`), never logged or audited.
 */

export interface DestinationStatus {
  /** The last seq the destination acknowledged. */
  forwardedSeq: number;
  /** The newest seq of the tenant's chain. */
  headSeq: number;
  lag: number;
  forwarded: number;
  attempts: number;
  lastError: string | null;
  lastErrorAt: string | null;
}

export interface DestinationView {
  id: string;
  name: string;
  kind: SiemKind;
  config: Record<string, unknown>;
  enabled: boolean;
  hasSecret: boolean;
  createdAt: string;
  updatedAt: string;
  status: DestinationStatus;
}

interface Row {
  id: string;
  name: string;
  kind: SiemKind;
  config: Record<string, unknown>;
  enabled: boolean;
  has_secret: boolean;
  created_at: Date;
  updated_at: Date;
  last_seq: string | null;
  head_seq: string | null;
  forwarded: string | null;
  attempts: number | null;
  last_error: string | null;
  last_error_at: Date | null;
}

const select = (tx: Tx, tenantId: string) => tx`
  select d.id, d.name, d.kind, d.config, d.enabled, (d.secret_ciphertext is not null) as has_secret,
    d.created_at, d.updated_at, c.last_seq, c.forwarded, c.attempts, c.last_error, c.last_error_at,
    (select seq from audit_heads h where h.tenant_id = ${tenantId}) as head_seq
  from siem_destinations d
  left join siem_cursors c on c.tenant_id = d.tenant_id and c.destination = 'tenant:' || d.id::text`;

function toView(r: Row): DestinationView {
  const forwardedSeq = Number(r.last_seq ?? 0);
  const headSeq = Number(r.head_seq ?? 0);
  return {
    id: r.id,
    name: r.name,
    kind: r.kind,
    config: r.config,
    enabled: r.enabled,
    hasSecret: r.has_secret,
    createdAt: r.created_at.toISOString(),
    updatedAt: r.updated_at.toISOString(),
    status: {
      forwardedSeq,
      headSeq,
      lag: Math.max(0, headSeq - forwardedSeq),
      forwarded: Number(r.forwarded ?? 0),
      attempts: r.attempts ?? 0,
      lastError: r.last_error,
      lastErrorAt: r.last_error_at?.toISOString() ?? null,
    },
  };
}

function mapDbError(e: unknown, name: string): never {
  if ((e as { code?: string }).code === '23505')
    throw conflict(`a SIEM destination named "${name}" already exists`);
  throw fromDatabaseError(e, 'SIEM destination') ?? e;
}

export async function listDestinations(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<DestinationView>> {
  const after = decodeCursor(q.cursor, ['name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      ${select(tx, tenantId)} where d.tenant_id = ${tenantId} ${after ? tx`and d.name > ${after.name}` : tx``}
      order by d.name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > q.limit && last ? encodeCursor({ name: last.name }) : null };
  });
}

async function readOne(tx: Tx, tenantId: string, id: string): Promise<DestinationView> {
  const [row] = await tx<Row[]>`${select(tx, tenantId)} where d.tenant_id = ${tenantId} and d.id = ${id}`;
  if (!row) throw notFound('SIEM destination');
  return toView(row);
}

export async function getDestination(res: Resources, tenantId: string, id: string): Promise<DestinationView> {
  return res.db.withTenant(tenantId, (tx) => readOne(tx, tenantId, id));
}

export interface DestinationInput {
  name: string;
  kind: SiemKind;
  config: Record<string, unknown>;
  secret?: string | undefined;
  enabled?: boolean | undefined;
}

export async function createDestination(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: DestinationInput,
): Promise<DestinationView> {
  const problems = siemConfigProblems(input.kind, input.config);
  if (problems.length) throw invalid(problems.join('; '));
  const id = randomUUID();
  const vault = vaultFor(res.master);
  return res.db
    .withTenant(tenantId, async (tx) => {
      const sealed = input.secret === undefined ? null : await vault.encrypt(tx, tenantId, id, input.secret);
      await tx`
        insert into siem_destinations (tenant_id, id, name, kind, config, enabled, secret_ciphertext, secret_nonce)
        values (${tenantId}, ${id}, ${input.name}, ${input.kind}, ${tx.json(input.config as never)},
                ${input.enabled ?? true}, ${sealed?.ciphertext ?? null}, ${sealed?.nonce ?? null})`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'siem.destination.created',
        targetType: 'siem_destination',
        targetId: id,
        details: {
          name: input.name,
          kind: input.kind,
          configFields: Object.keys(input.config).sort(),
          secret: sealed ? 'set' : 'none',
          enabled: input.enabled ?? true,
        },
      });
      return readOne(tx, tenantId, id);
    })
    .catch((e: unknown) => mapDbError(e, input.name));
}

export interface DestinationPatch {
  name?: string | undefined;
  /** Merged into the current config; null removes a setting. */
  config?: Record<string, unknown> | undefined;
  secret?: string | null | undefined;
  enabled?: boolean | undefined;
}

export async function updateDestination(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  patch: DestinationPatch,
): Promise<DestinationView> {
  const vault = vaultFor(res.master);
  let name = patch.name ?? '';
  return res.db
    .withTenant(tenantId, async (tx) => {
      const [current] = await tx<{ name: string; kind: SiemKind; config: Record<string, unknown> }[]>`
        select name, kind, config from siem_destinations where tenant_id = ${tenantId} and id = ${id} for update`;
      if (!current) throw notFound('SIEM destination');
      name = patch.name ?? current.name;
      const config = mergeConfig(current.config, patch.config);
      const problems = siemConfigProblems(current.kind, config);
      if (problems.length) throw invalid(problems.join('; '));
      const secret = await sealedColumnUpdate(
        tx,
        vault,
        { tenantId, credentialId: id, column: 'secret' },
        patch.secret,
      );
      await tx`
        update siem_destinations set name = ${name}, config = ${tx.json(config as never)},
          enabled = coalesce(${patch.enabled ?? null}::boolean, enabled), updated_at = clock_timestamp() ${secret.sql}
        where tenant_id = ${tenantId} and id = ${id}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'siem.destination.updated',
        targetType: 'siem_destination',
        targetId: id,
        details: {
          name,
          kind: current.kind,
          fields: Object.keys(patch)
            .filter((k) => k !== 'secret' && patch[k as keyof DestinationPatch] !== undefined)
            .sort(),
          configFields: Object.keys(patch.config ?? {}).sort(),
          secret: secret.change,
          ...(patch.enabled !== undefined ? { enabled: patch.enabled } : {}),
        },
      });
      return readOne(tx, tenantId, id);
    })
    .catch((e: unknown) => mapDbError(e, name));
}

export async function deleteDestination(res: Resources, tenantId: string, actor: Actor, id: string) {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ name: string; kind: string }[]>`
      delete from siem_destinations where tenant_id = ${tenantId} and id = ${id} returning name, kind`;
    if (!row) throw notFound('SIEM destination');
    await tx`delete from siem_cursors where tenant_id = ${tenantId} and destination = ${'tenant:' + id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'siem.destination.deleted',
      targetType: 'siem_destination',
      targetId: id,
      details: { name: row.name, kind: row.kind },
    });
  });
}

/**
 * Every enabled tenant destination, for the forwarder supervisor: listed under system access; a
 * secret is opened (inside its own tenant's transaction) only by the process that forwards it.
 */
export async function enabledTenantDestinations(res: Resources): Promise<ResolvedDestination[]> {
  const rows = await res.db.withSystemAccess(
    (tx) => tx<
      {
        tenant_id: string;
        id: string;
        name: string;
        kind: SiemKind;
        config: SiemConfig;
        has_secret: boolean;
        version: string;
      }[]
    >`select tenant_id, id, name, kind, config, (secret_ciphertext is not null) as has_secret,
        updated_at::text as version
      from siem_destinations d
      where enabled and exists (select 1 from tenants t where t.id = d.tenant_id and t.status = 'active')
      order by tenant_id, name`,
  );
  const vault = vaultFor(res.master);
  return rows.map((r) => ({
    key: `tenant:${r.id}`,
    name: r.name,
    kind: r.kind,
    config: r.config,
    secret: undefined,
    loadSecret: r.has_secret
      ? () =>
          res.db.withTenant(r.tenant_id, async (tx) => {
            const [s] = await tx<{ secret_ciphertext: Buffer | null; secret_nonce: Buffer | null }[]>`
              select secret_ciphertext, secret_nonce from siem_destinations
              where tenant_id = ${r.tenant_id} and id = ${r.id}`;
            return s?.secret_ciphertext && s.secret_nonce
              ? vault.decrypt(tx, r.tenant_id, r.id, {
                  ciphertext: s.secret_ciphertext,
                  nonce: s.secret_nonce,
                })
              : undefined;
          })
      : undefined,
    tenantId: r.tenant_id,
    version: r.version,
  }));
}

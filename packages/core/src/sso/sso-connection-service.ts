import { randomUUID } from 'node:crypto';
import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Tx } from '@steward/db/database';
import { vaultFor } from '../connections/connection-service.ts';
import { conflict, fromDatabaseError, invalid, notFound } from '../errors/app-error.ts';
import type { Permission } from '../identity/permissions.ts';
import { assertCanGrant, getRoleByName } from '../identity/role-service.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { sealedColumnUpdate } from '../secrets/sealed-column.ts';
import { mergeConfig } from '../shared/merge-config.ts';

/**
 * A tenant's single sign-on connections (OIDC or SAML 2.0 identity providers). The OIDC client
 * secret is write-only: encrypted with the tenant's data key, never returned (`hasSecret`), never
 * logged or audited. Role mappings may not name the owner role and may only name roles the
 * configuring admin could grant.
 */

export const SSO_PROTOCOLS = ['oidc', 'saml'] as const;
export type SsoProtocol = (typeof SSO_PROTOCOLS)[number];

export const OidcSettings = Type.Object(
  {
    issuer: Type.String({ maxLength: 2048, pattern: '^https?://', description: 'the OpenID provider' }),
    clientId: Type.String({ minLength: 1, maxLength: 512 }),
    scopes: Type.Optional(
      Type.String({
        maxLength: 500,
        pattern: '^[\\x21\\x23-\\x5B\\x5D-\\x7E ]+$',
        description: 'default "openid email profile"',
      }),
    ),
    emailClaim: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'default email' })),
    nameClaim: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'default name' })),
  },
  { additionalProperties: false },
);
export type OidcSettings = Static<typeof OidcSettings>;

export const SamlSettings = Type.Object(
  {
    entryPoint: Type.String({ maxLength: 2048, pattern: '^https?://', description: 'the IdP sign-on URL' }),
    idpIssuer: Type.Optional(
      Type.String({ minLength: 1, maxLength: 1024, description: "the IdP's entity id" }),
    ),
    idpCert: Type.String({
      minLength: 100,
      maxLength: 20000,
      description: 'the IdP signing certificate (PEM, or base64 DER)',
    }),
    spEntityId: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 1024,
        description: 'our entity id / audience (default the callback URL)',
      }),
    ),
    emailAttribute: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 256,
        description: 'default: the NameID (emailAddress format) or "email"',
      }),
    ),
    nameAttribute: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    requireSignedResponse: Type.Optional(
      Type.Boolean({ description: 'the Response must be signed too, not only the assertion (default true)' }),
    ),
  },
  { additionalProperties: false },
);
export type SamlSettings = Static<typeof SamlSettings>;

const checkers = {
  oidc: TypeCompiler.Compile(OidcSettings),
  saml: TypeCompiler.Compile(SamlSettings),
};

const ROLE_NAME = /^[a-z][a-z0-9_-]{0,39}$/;

export interface SsoConnectionView {
  id: string;
  protocol: SsoProtocol;
  name: string;
  enabled: boolean;
  config: Record<string, unknown>;
  defaultRole: string;
  groupsAttribute: string | null;
  roleMapping: Record<string, string>;
  hasSecret: boolean;
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  protocol: SsoProtocol;
  name: string;
  enabled: boolean;
  config: Record<string, unknown>;
  default_role: string;
  groups_attribute: string | null;
  role_mapping: Record<string, string>;
  has_secret: boolean;
  created_at: Date;
  updated_at: Date;
}

const viewColumns = (tx: Tx) =>
  tx`id, protocol, name, enabled, config, default_role, groups_attribute, role_mapping,
     (secret_ciphertext is not null) as has_secret, created_at, updated_at`;

const toView = (r: Row): SsoConnectionView => ({
  id: r.id,
  protocol: r.protocol,
  name: r.name,
  enabled: r.enabled,
  config: r.config,
  defaultRole: r.default_role,
  groupsAttribute: r.groups_attribute,
  roleMapping: r.role_mapping,
  hasSecret: r.has_secret,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface SsoConnectionInput {
  protocol: SsoProtocol;
  name: string;
  enabled?: boolean | undefined;
  config: Record<string, unknown>;
  /** OIDC client secret (write-only). */
  clientSecret?: string | undefined;
  defaultRole?: string | undefined;
  groupsAttribute?: string | null | undefined;
  roleMapping?: Record<string, string> | undefined;
}

export interface SsoConnectionPatch {
  name?: string | undefined;
  enabled?: boolean | undefined;
  /** Merged into the current config; a null value removes that setting. */
  config?: Record<string, unknown> | undefined;
  clientSecret?: string | null | undefined;
  defaultRole?: string | undefined;
  groupsAttribute?: string | null | undefined;
  roleMapping?: Record<string, string> | undefined;
}

function configProblems(protocol: SsoProtocol, config: Record<string, unknown>): string[] {
  const problems = [...checkers[protocol].Errors(config)]
    .slice(0, 5)
    .map((e) => `body/config${e.path} ${e.message}`.replace(/\s+/g, ' '));
  if (problems.length) return problems;
  const urlField = protocol === 'oidc' ? 'issuer' : 'entryPoint';
  try {
    const u = new URL(config[urlField] as string);
    if (u.username || u.password) return [`body/config/${urlField} must not hold a user name or password`];
    if (u.protocol === 'http:' && !isLoopback(u.hostname))
      return [`body/config/${urlField} must be https (plain http only on a loopback address)`];
  } catch {
    return [`body/config/${urlField} is not a URL`];
  }
  return [];
}

export function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Every role a connection names must exist, must not be owner, and must be grantable by the admin. */
async function checkRoles(
  tx: Tx,
  tenantId: string,
  granter: ReadonlySet<Permission> | undefined,
  defaultRole: string,
  mapping: Record<string, string>,
): Promise<void> {
  if (Object.keys(mapping).length > 200) throw invalid('body/roleMapping has more than 200 entries');
  for (const [group, role] of [['defaultRole', defaultRole], ...Object.entries(mapping)] as [
    string,
    string,
  ][]) {
    const where = group === 'defaultRole' ? 'body/defaultRole' : `body/roleMapping/${group}`;
    if (group.length > 256) throw invalid('body/roleMapping has a group name longer than 256 characters');
    if (typeof role !== 'string' || !ROLE_NAME.test(role)) throw invalid(`${where} is not a role name`);
    if (role === 'owner') throw invalid(`${where}: single sign-on cannot grant the owner role`);
    const r = await getRoleByName(tx, tenantId, role);
    if (granter) assertCanGrant(granter, r);
  }
}

function mapDbError(e: unknown, name: string): never {
  if ((e as { code?: string }).code === '23505')
    throw conflict(`an SSO connection named "${name}" already exists`);
  throw fromDatabaseError(e, 'SSO connection') ?? e;
}

export async function listSsoConnections(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<SsoConnectionView>> {
  const after = decodeCursor(q.cursor, ['name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select ${viewColumns(tx)} from sso_connections where tenant_id = ${tenantId}
        ${after ? tx`and name > ${after.name}` : tx``}
      order by name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > q.limit && last ? encodeCursor({ name: last.name }) : null };
  });
}

export async function getSsoConnection(
  res: Resources,
  tenantId: string,
  id: string,
): Promise<SsoConnectionView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<Row[]>`select ${viewColumns(tx)} from sso_connections where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('SSO connection');
  return toView(row);
}

export async function createSsoConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: SsoConnectionInput,
  granter?: ReadonlySet<Permission>,
): Promise<SsoConnectionView> {
  const problems = configProblems(input.protocol, input.config);
  if (problems.length) throw invalid(problems.join('; '));
  if (input.protocol === 'saml' && input.clientSecret !== undefined)
    throw invalid('body/clientSecret is for OIDC connections only');
  const id = randomUUID();
  const defaultRole = input.defaultRole ?? 'member';
  const mapping = input.roleMapping ?? {};
  return res.db
    .withTenant(tenantId, async (tx) => {
      await checkRoles(tx, tenantId, granter, defaultRole, mapping);
      const sealed =
        input.clientSecret === undefined
          ? null
          : await vaultFor(res.master).encrypt(tx, tenantId, id, input.clientSecret);
      const [row] = await tx<Row[]>`
        insert into sso_connections (tenant_id, id, protocol, name, enabled, config, default_role, groups_attribute,
                                     role_mapping, secret_ciphertext, secret_nonce)
        values (${tenantId}, ${id}, ${input.protocol}, ${input.name}, ${input.enabled ?? true},
                ${tx.json(input.config as never)}, ${defaultRole}, ${input.groupsAttribute ?? null},
                ${tx.json(mapping)}, ${sealed?.ciphertext ?? null}, ${sealed?.nonce ?? null})
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'sso_connection.created',
        targetType: 'sso_connection',
        targetId: id,
        details: {
          protocol: input.protocol,
          name: input.name,
          configFields: Object.keys(input.config).sort(),
          secret: sealed ? 'set' : 'none',
          defaultRole,
          roleMapping: mapping,
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, input.name));
}

export async function updateSsoConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  patch: SsoConnectionPatch,
  granter?: ReadonlySet<Permission>,
): Promise<SsoConnectionView> {
  let name = patch.name ?? '';
  return res.db
    .withTenant(tenantId, async (tx) => {
      const [current] = await tx<Row[]>`
        select ${viewColumns(tx)} from sso_connections where tenant_id = ${tenantId} and id = ${id} for update`;
      if (!current) throw notFound('SSO connection');
      name = patch.name ?? current.name;
      const config = mergeConfig(current.config, patch.config);
      const problems = configProblems(current.protocol, config);
      if (problems.length) throw invalid(problems.join('; '));
      const defaultRole = patch.defaultRole ?? current.default_role;
      const mapping = patch.roleMapping ?? current.role_mapping;
      if (patch.defaultRole !== undefined || patch.roleMapping !== undefined)
        await checkRoles(tx, tenantId, granter, defaultRole, mapping);
      if (typeof patch.clientSecret === 'string' && current.protocol !== 'oidc')
        throw invalid('body/clientSecret is for OIDC connections only');
      const secret = await sealedColumnUpdate(
        tx,
        vaultFor(res.master),
        { tenantId, credentialId: id, column: 'secret' },
        patch.clientSecret,
      );
      const groupsAttribute =
        patch.groupsAttribute === undefined ? current.groups_attribute : patch.groupsAttribute;
      const [row] = await tx<Row[]>`
        update sso_connections set name = ${name}, enabled = ${patch.enabled ?? current.enabled},
          config = ${tx.json(config as never)}, default_role = ${defaultRole}, groups_attribute = ${groupsAttribute},
          role_mapping = ${tx.json(mapping)}, updated_at = now() ${secret.sql}
        where tenant_id = ${tenantId} and id = ${id}
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'sso_connection.updated',
        targetType: 'sso_connection',
        targetId: id,
        details: {
          name,
          fields: Object.keys(patch)
            .filter((k) => k !== 'clientSecret' && patch[k as keyof SsoConnectionPatch] !== undefined)
            .sort(),
          configFields: Object.keys(patch.config ?? {}).sort(),
          secret: secret.change,
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, name));
}

export async function deleteSsoConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ name: string; protocol: string }[]>`
      delete from sso_connections where tenant_id = ${tenantId} and id = ${id} returning name, protocol`;
    if (!row) throw notFound('SSO connection');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'sso_connection.deleted',
      targetType: 'sso_connection',
      targetId: id,
      details: { protocol: row.protocol, name: row.name },
    });
  });
}

/** A connection as the sign-in flow uses it, with the decrypted client secret. Never leaves the process. */
export interface ResolvedSsoConnection extends SsoConnectionView {
  clientSecret: string | undefined;
}

/** The enabled connection `id` of a tenant (`tx` scoped to it), or not found. */
export async function resolveSsoConnection(
  res: Resources,
  tx: Tx,
  tenantId: string,
  id: string,
): Promise<ResolvedSsoConnection> {
  const [row] = await tx<(Row & { secret_ciphertext: Buffer | null; secret_nonce: Buffer | null })[]>`
    select ${viewColumns(tx)}, secret_ciphertext, secret_nonce from sso_connections
    where tenant_id = ${tenantId} and id = ${id} and enabled`;
  if (!row) throw notFound('SSO connection');
  const clientSecret =
    row.secret_ciphertext && row.secret_nonce
      ? await vaultFor(res.master).decrypt(tx, tenantId, row.id, {
          ciphertext: row.secret_ciphertext,
          nonce: row.secret_nonce,
        })
      : undefined;
  return { ...toView(row), clientSecret };
}

import { createPrivateKey, randomUUID, X509Certificate } from 'node:crypto';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Tx } from '@steward/db/database';
import type { MasterKey } from '../crypto/master-key.ts';
import { conflict, fromDatabaseError, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { CredentialVault } from '../secrets/envelope.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { sealedColumnUpdate } from '../secrets/sealed-column.ts';
import { mergeConfig } from '../shared/merge-config.ts';
import { healthColumns, toUseHealth, type HealthRow, type UseHealth } from './connection-health.ts';

/**
 * Connections: where tools send things (an SMTP server, an HTTP API). The non-secret settings live
 * in `config`; the secret (a password or a token) is write-only: stored encrypted with the tenant's
 * envelope key, never returned (views say `hasSecret`), never logged, never in audit details.
 */

export const CONNECTION_KINDS = ['smtp', 'http', 'imap'] as const;
export type ConnectionKind = (typeof CONNECTION_KINDS)[number];

export const CONNECTION_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$';
export const MAX_SECRET_LENGTH = 8192;

/** A plain mailbox address (no display name); deliberately strict. */
export const EMAIL_PATTERN =
  "^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$";

const Host = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern:
    '^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[?[0-9A-Fa-f:.]+\\]?)$',
  description: 'a host name or an IP address',
});

const AllowPrivate = Type.Boolean({
  description:
    'allow this connection to reach private, loopback and link-local addresses (else only the tenant setting network.allowPrivate does)',
});

export const SmtpConfig = Type.Object(
  {
    host: Host,
    port: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 65535, description: 'default 587 (465 when secure)' }),
    ),
    secure: Type.Optional(
      Type.Boolean({ description: 'TLS from the start (port 465); else STARTTLS when offered' }),
    ),
    requireTls: Type.Optional(Type.Boolean({ description: 'fail unless STARTTLS succeeds' })),
    from: Type.String({ pattern: EMAIL_PATTERN, maxLength: 320 }),
    fromName: Type.Optional(Type.String({ maxLength: 100, pattern: '^[^\\r\\n<>"]*$' })),
    username: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    allowPrivateNetwork: Type.Optional(AllowPrivate),
  },
  { additionalProperties: false },
);
export type SmtpConfig = Static<typeof SmtpConfig>;

export const HttpConfig = Type.Object(
  {
    baseUrl: Type.String({
      maxLength: 2048,
      pattern: '^https?://',
      description: 'the credential is sent only to URLs that start with this',
    }),
    headerName: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$",
        description:
          'header that carries the secret (default Authorization); its value is the secret as given',
      }),
    ),
    allowPrivateNetwork: Type.Optional(AllowPrivate),
    clientCertificate: Type.Optional(
      Type.String({
        maxLength: 16_384,
        pattern: '^\\s*-----BEGIN CERTIFICATE-----',
        description:
          'mutual TLS: the client certificate (PEM, chain allowed); its key is the clientKey secret',
      }),
    ),
    caCertificate: Type.Optional(
      Type.String({
        maxLength: 65_536,
        pattern: '^\\s*-----BEGIN CERTIFICATE-----',
        description: 'CA certificate(s) (PEM) trusted for this server instead of the public roots',
      }),
    ),
  },
  { additionalProperties: false },
);
export type HttpConfig = Static<typeof HttpConfig>;

/** A mailbox the IMAP watcher reads (the password is the connection's secret). */
export const ImapConfig = Type.Object(
  {
    host: Host,
    port: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 65535, description: 'default 993 (143 when not secure)' }),
    ),
    secure: Type.Optional(Type.Boolean({ description: 'TLS from the start (default true)' })),
    username: Type.String({ minLength: 1, maxLength: 256 }),
    mailbox: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'default INBOX' })),
    pollSeconds: Type.Optional(
      Type.Integer({ minimum: 5, maximum: 3600, description: 'polling fallback (default 60)' }),
    ),
    allowPrivateNetwork: Type.Optional(AllowPrivate),
  },
  { additionalProperties: false },
);
export type ImapConfig = Static<typeof ImapConfig>;

const CONFIG_SCHEMAS: Record<ConnectionKind, TSchema> = {
  smtp: SmtpConfig,
  http: HttpConfig,
  imap: ImapConfig,
};
const checkers = Object.fromEntries(
  Object.entries(CONFIG_SCHEMAS).map(([k, s]) => [k, TypeCompiler.Compile(s)]),
) as Record<ConnectionKind, ReturnType<typeof TypeCompiler.Compile>>;

/** Problems with a kind's config (empty when it is valid). */
export function configProblems(kind: ConnectionKind, config: Record<string, unknown>): string[] {
  const c = checkers[kind];
  const problems = [...c.Errors(config)]
    .slice(0, 5)
    .map((e) => `body/config${e.path} ${e.message}`.replace(/\s+/g, ' '));
  if (problems.length) return problems;
  if (kind === 'http') {
    const base = config.baseUrl as string;
    let url: URL | undefined;
    try {
      url = new URL(base);
    } catch {
      return ['body/config/baseUrl is not a URL'];
    }
    if (url.username || url.password) return ['body/config/baseUrl must not hold a user name or password'];
    if (url.search || url.hash) return ['body/config/baseUrl must not have a query or fragment'];
    for (const field of ['clientCertificate', 'caCertificate'] as const) {
      const pem = config[field];
      if (typeof pem !== 'string') continue;
      try {
        new X509Certificate(pem);
      } catch {
        return [`body/config/${field} is not a readable PEM certificate`];
      }
    }
  }
  return [];
}

/** Problems with a mutual-TLS client key (never quoting it). */
export function clientKeyProblem(key: string, certificate: unknown): string | undefined {
  let parsed;
  try {
    parsed = createPrivateKey(key);
  } catch {
    return 'body/clientKey is not a readable unencrypted PEM private key';
  }
  if (typeof certificate !== 'string') return 'body/clientKey needs config.clientCertificate';
  try {
    if (!new X509Certificate(certificate).checkPrivateKey(parsed))
      return 'body/clientKey does not match config.clientCertificate';
  } catch {
    return 'body/clientKey does not match config.clientCertificate';
  }
  return undefined;
}

/** The credential id of a connection's mutual-TLS key (its own additional data). */
const clientKeyId = (id: string) => `${id}:client-key`;

export interface ConnectionView {
  id: string;
  kind: ConnectionKind;
  name: string;
  config: Record<string, unknown>;
  isDefault: boolean;
  hasSecret: boolean;
  /** A mutual-TLS client key is stored (never returned). */
  hasClientKey: boolean;
  createdAt: string;
  updatedAt: string;
  /** How tools and watchers last used it. */
  health: UseHealth;
}

interface Row extends HealthRow {
  id: string;
  kind: ConnectionKind;
  name: string;
  config: Record<string, unknown>;
  is_default: boolean;
  has_secret: boolean;
  has_client_key: boolean;
  created_at: Date;
  updated_at: Date;
}

/** Columns for views: never the secret columns themselves. */
const viewColumns = (tx: Tx) =>
  tx`id, kind, name, config, is_default, (secret_ciphertext is not null) as has_secret,
      (client_key_ciphertext is not null) as has_client_key, created_at, updated_at, ${healthColumns(tx)}`;

const toView = (r: Row): ConnectionView => ({
  id: r.id,
  kind: r.kind,
  name: r.name,
  config: r.config,
  isDefault: r.is_default,
  hasSecret: r.has_secret,
  hasClientKey: r.has_client_key,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  health: toUseHealth(r),
});

const vaults = new WeakMap<MasterKey, CredentialVault>();

/** The credential vault of an installation (one per master key). */
export function vaultFor(master: MasterKey): CredentialVault {
  let v = vaults.get(master);
  if (!v) {
    v = new CredentialVault(master);
    vaults.set(master, v);
  }
  return v;
}

export async function listConnections(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined; kind?: ConnectionKind | undefined },
): Promise<Page<ConnectionView>> {
  const after = decodeCursor(q.cursor, ['name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select ${viewColumns(tx)} from connections where tenant_id = ${tenantId}
        ${q.kind ? tx`and kind = ${q.kind}` : tx``}
        ${after ? tx`and name > ${after.name}` : tx``}
      order by name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = items.at(-1);
    return { items, nextCursor: rows.length > q.limit && last ? encodeCursor({ name: last.name }) : null };
  });
}

export async function getConnection(res: Resources, tenantId: string, id: string): Promise<ConnectionView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) =>
      tx<Row[]>`select ${viewColumns(tx)} from connections where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('connection');
  return toView(row);
}

export interface ConnectionInput {
  kind: ConnectionKind;
  name: string;
  config: Record<string, unknown>;
  secret?: string | undefined;
  /** Mutual TLS (http): the client's private key (PEM), write-only like the secret. */
  clientKey?: string | undefined;
  isDefault?: boolean | undefined;
}

export interface ConnectionPatch {
  name?: string | undefined;
  /** Merged into the current config; a null value removes that setting. */
  config?: Record<string, unknown> | undefined;
  /** A new secret, or null to remove it. */
  secret?: string | null | undefined;
  /** A new mutual-TLS client key, or null to remove it. */
  clientKey?: string | null | undefined;
  isDefault?: boolean | undefined;
}

function mapDbError(e: unknown, name: string): never {
  const code = (e as { code?: string }).code;
  const constraint = (e as { constraint_name?: string }).constraint_name ?? '';
  if (code === '23505' && constraint.includes('default'))
    throw conflict('another connection of this kind became the default at the same time; try again');
  if (code === '23505') throw conflict(`a connection named "${name}" already exists`);
  throw fromDatabaseError(e, 'connection') ?? e;
}

async function clearDefault(tx: Tx, tenantId: string, kind: ConnectionKind, except: string) {
  await tx`update connections set is_default = false, updated_at = now()
           where tenant_id = ${tenantId} and kind = ${kind} and is_default and id <> ${except}`;
}

export async function createConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: ConnectionInput,
): Promise<ConnectionView> {
  const problems = configProblems(input.kind, input.config);
  if (problems.length) throw invalid(problems.join('; '));
  if (input.clientKey !== undefined) {
    const problem =
      input.kind === 'http'
        ? clientKeyProblem(input.clientKey, input.config.clientCertificate)
        : 'body/clientKey is for http connections';
    if (problem) throw invalid(problem);
  }
  const id = randomUUID();
  const vault = vaultFor(res.master);
  return res.db
    .withTenant(tenantId, async (tx) => {
      const sealed = input.secret === undefined ? null : await vault.encrypt(tx, tenantId, id, input.secret);
      const sealedKey =
        input.clientKey === undefined
          ? null
          : await vault.encrypt(tx, tenantId, clientKeyId(id), input.clientKey);
      if (input.isDefault) await clearDefault(tx, tenantId, input.kind, id);
      const [row] = await tx<Row[]>`
        insert into connections (tenant_id, id, kind, name, config, is_default, secret_ciphertext, secret_nonce,
                                 client_key_ciphertext, client_key_nonce)
        values (${tenantId}, ${id}, ${input.kind}, ${input.name}, ${tx.json(input.config as never)},
                ${input.isDefault ?? false}, ${sealed?.ciphertext ?? null}, ${sealed?.nonce ?? null},
                ${sealedKey?.ciphertext ?? null}, ${sealedKey?.nonce ?? null})
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'connection.created',
        targetType: 'connection',
        targetId: id,
        details: {
          kind: input.kind,
          name: input.name,
          configFields: Object.keys(input.config).sort(),
          secret: sealed ? 'set' : 'none',
          clientKey: sealedKey ? 'set' : 'none',
          isDefault: input.isDefault ?? false,
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, input.name));
}

export async function updateConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  patch: ConnectionPatch,
): Promise<ConnectionView> {
  const vault = vaultFor(res.master);
  let name = patch.name ?? '';
  return res.db
    .withTenant(tenantId, async (tx) => {
      const [current] = await tx<Row[]>`
        select ${viewColumns(tx)} from connections where tenant_id = ${tenantId} and id = ${id} for update`;
      if (!current) throw notFound('connection');
      name = patch.name ?? current.name;
      const config = mergeConfig(current.config, patch.config);
      const problems = configProblems(current.kind, config);
      if (problems.length) throw invalid(problems.join('; '));
      if (typeof patch.clientKey === 'string') {
        const problem =
          current.kind === 'http'
            ? clientKeyProblem(patch.clientKey, config.clientCertificate)
            : 'body/clientKey is for http connections';
        if (problem) throw invalid(problem);
      }
      const secret = await sealedColumnUpdate(
        tx,
        vault,
        { tenantId, credentialId: id, column: 'secret' },
        patch.secret,
      );
      const clientKey = await sealedColumnUpdate(
        tx,
        vault,
        { tenantId, credentialId: clientKeyId(id), column: 'client_key' },
        patch.clientKey,
      );
      const isDefault = patch.isDefault ?? current.is_default;
      if (patch.isDefault) await clearDefault(tx, tenantId, current.kind, id);
      const [row] = await tx<Row[]>`
        update connections set name = ${name}, config = ${tx.json(config as never)}, is_default = ${isDefault},
          updated_at = now() ${secret.sql} ${clientKey.sql}
        where tenant_id = ${tenantId} and id = ${id}
        returning ${viewColumns(tx)}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'connection.updated',
        targetType: 'connection',
        targetId: id,
        details: {
          kind: current.kind,
          name,
          fields: Object.keys(patch)
            .filter(
              (k) => k !== 'secret' && k !== 'clientKey' && patch[k as keyof ConnectionPatch] !== undefined,
            )
            .sort(),
          configFields: Object.keys(patch.config ?? {}).sort(),
          secret: secret.change,
          clientKey: clientKey.change,
        },
      });
      return toView(row!);
    })
    .catch((e: unknown) => mapDbError(e, name));
}

export async function deleteConnection(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ name: string; kind: string }[]>`
      delete from connections where tenant_id = ${tenantId} and id = ${id} returning name, kind`;
    if (!row) throw notFound('connection');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'connection.deleted',
      targetType: 'connection',
      targetId: id,
      details: { kind: row.kind, name: row.name },
    });
  });
}

/** A connection as a tool uses it: config and the decrypted secret. Never leaves the process. */
export interface ResolvedConnection<C> {
  id: string;
  name: string;
  config: C;
  secret: string | undefined;
  /** Mutual TLS: the client's private key (PEM), when one is stored. */
  clientKey?: string | undefined;
}

/** Why a tool could not get its connection (the message is safe to store and show). */
export class ConnectionUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConnectionUnavailableError';
  }
}

/**
 * The connection a tool should use: the one named, or the tenant's default of that kind (the one
 * marked default, else the only one). `tx` must be scoped to the tenant.
 */
export async function resolveConnection<K extends ConnectionKind>(
  vault: CredentialVault,
  tx: Tx,
  tenantId: string,
  kind: K,
  name?: string,
): Promise<ResolvedConnection<K extends 'smtp' ? SmtpConfig : HttpConfig>> {
  const rows = await tx<
    (Row & {
      secret_ciphertext: Buffer | null;
      secret_nonce: Buffer | null;
      client_key_ciphertext: Buffer | null;
      client_key_nonce: Buffer | null;
    })[]
  >`
    select id, kind, name, config, is_default, secret_ciphertext, secret_nonce, client_key_ciphertext,
           client_key_nonce from connections
    where tenant_id = ${tenantId} and kind = ${kind} ${name === undefined ? tx`` : tx`and name = ${name}`}
    order by is_default desc, created_at limit 2`;
  const first = rows[0];
  if (!first) {
    throw new ConnectionUnavailableError(
      name === undefined ? `the tenant has no ${kind} connection` : `no ${kind} connection named "${name}"`,
    );
  }
  if (name === undefined && !first.is_default && rows.length > 1) {
    throw new ConnectionUnavailableError(
      `the tenant has several ${kind} connections and none is the default: name one`,
    );
  }
  const secret =
    first.secret_ciphertext && first.secret_nonce
      ? await vault.decrypt(tx, tenantId, first.id, {
          ciphertext: first.secret_ciphertext,
          nonce: first.secret_nonce,
        })
      : undefined;
  const clientKey =
    first.client_key_ciphertext && first.client_key_nonce
      ? await vault.decrypt(tx, tenantId, clientKeyId(first.id), {
          ciphertext: first.client_key_ciphertext,
          nonce: first.client_key_nonce,
        })
      : undefined;
  return {
    id: first.id,
    name: first.name,
    config: first.config as K extends 'smtp' ? SmtpConfig : HttpConfig,
    secret,
    clientKey,
  };
}

import { Type, type Static } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/**
 * Where the audit stream goes: a syslog collector (RFC 5424 over TCP with octet-counting framing,
 * optionally TLS) or an HTTPS endpoint that takes JSON batches. A destination belongs to one tenant
 * (admin API, forwards that tenant's chain) or to the installation (STEWARD_SIEM_DESTINATIONS,
 * forwards every tenant's chain and the platform chain).
 */

export const SIEM_KINDS = ['syslog', 'https'] as const;
export type SiemKind = (typeof SIEM_KINDS)[number];

export const SIEM_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$';
export const MAX_SIEM_SECRET_LENGTH = 8192;

const Host = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern:
    '^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\\[?[0-9A-Fa-f:.]+\\]?)$',
  description: 'a host name or an IP address',
});

const Common = {
  caCert: Type.Optional(
    Type.String({ maxLength: 65536, description: 'PEM certificate(s) to trust instead of the system CAs' }),
  ),
  batchSize: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 1000, description: 'entries per write or POST (default 100)' }),
  ),
  allowPrivateNetwork: Type.Optional(
    Type.Boolean({ description: 'a tenant destination may reach private and loopback addresses' }),
  ),
};

export const SyslogConfig = Type.Object(
  {
    host: Host,
    port: Type.Integer({ minimum: 1, maximum: 65535 }),
    tls: Type.Optional(Type.Boolean({ description: 'syslog over TLS (RFC 5425); default false' })),
    ...Common,
    facility: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 23, description: 'syslog facility (default 13, log audit)' }),
    ),
    hostname: Type.Optional(
      Type.String({ pattern: '^[!-~]{1,255}$', description: 'HOSTNAME field (default: this host)' }),
    ),
  },
  { additionalProperties: false },
);
export type SyslogConfig = Static<typeof SyslogConfig>;

export const HttpsConfig = Type.Object(
  {
    url: Type.String({
      maxLength: 2048,
      pattern: '^https://',
      description: 'the endpoint batches are POSTed to',
    }),
    headers: Type.Optional(
      Type.Record(
        Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" }),
        Type.String({ maxLength: 1000, pattern: '^[^\\r\\n]*$' }),
        {
          description: 'extra non-secret headers',
        },
      ),
    ),
    tokenHeader: Type.Optional(
      Type.String({
        pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$",
        description: 'header that carries the secret token (default Authorization)',
      }),
    ),
    tokenPrefix: Type.Optional(
      Type.String({
        maxLength: 50,
        pattern: '^[^\\r\\n]*$',
        description: 'put before the token (default "Bearer ")',
      }),
    ),
    timeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 300, description: 'default 30' })),
    ...Common,
  },
  { additionalProperties: false },
);
export type HttpsConfig = Static<typeof HttpsConfig>;

export type SiemConfig = SyslogConfig | HttpsConfig;

const checkers = {
  syslog: TypeCompiler.Compile(SyslogConfig),
  https: TypeCompiler.Compile(HttpsConfig),
};

/** Problems with a kind's config (empty when it is valid); `at` prefixes each path. */
export function siemConfigProblems(kind: SiemKind, config: unknown, at = 'body/config'): string[] {
  const problems = [...checkers[kind].Errors(config)]
    .slice(0, 5)
    .map((e) => `${at}${e.path} ${e.message}`.replace(/\s+/g, ' '));
  if (problems.length) return problems;
  if (kind === 'https') {
    const raw = (config as HttpsConfig).url;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return [`${at}/url is not a URL`];
    }
    if (url.username || url.password) return [`${at}/url must not hold a user name or password`];
  }
  return [];
}

/** An installation-wide destination, from STEWARD_SIEM_DESTINATIONS (the token is inline there). */
export const InstallationDestination = Type.Union([
  Type.Object(
    {
      name: Type.String({ pattern: SIEM_NAME_PATTERN }),
      kind: Type.Literal('syslog'),
      config: SyslogConfig,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: Type.String({ pattern: SIEM_NAME_PATTERN }),
      kind: Type.Literal('https'),
      config: HttpsConfig,
      token: Type.Optional(Type.String({ minLength: 1, maxLength: MAX_SIEM_SECRET_LENGTH })),
    },
    { additionalProperties: false },
  ),
]);
export type InstallationDestination = Static<typeof InstallationDestination>;

const installationChecker = TypeCompiler.Compile(Type.Array(InstallationDestination, { maxItems: 50 }));

/** Parse STEWARD_SIEM_DESTINATIONS: a JSON array; returns problems instead of throwing. */
export function parseInstallationDestinations(
  raw: string,
  name = 'STEWARD_SIEM_DESTINATIONS',
): { destinations: InstallationDestination[]; problems: string[] } {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    return { destinations: [], problems: [`${name} must be a JSON array of destinations`] };
  }
  if (!installationChecker.Check(value)) {
    const problems = [...installationChecker.Errors(value)]
      .slice(0, 3)
      .map((e) => `${name}${e.path} ${e.message}`);
    return { destinations: [], problems };
  }
  const problems: string[] = [];
  const names = new Set<string>();
  for (const [i, d] of value.entries()) {
    problems.push(...siemConfigProblems(d.kind, d.config, `${name}/${i}/config`));
    if (names.has(d.name)) problems.push(`${name}: the name "${d.name}" is used twice`);
    names.add(d.name);
  }
  return { destinations: problems.length ? [] : value, problems };
}

/**
 * A destination as the forwarder runs it. The secret is decrypted only by the process that takes
 * the destination's lease (`loadSecret`), and never leaves it.
 */
export interface ResolvedDestination {
  /** The cursor key: `tenant:<id>` or `install:<name>`. */
  key: string;
  name: string;
  kind: SiemKind;
  config: SiemConfig;
  secret: string | undefined;
  /** Decrypts the secret (tenant destinations); the forwarder calls it when it starts. */
  loadSecret?: (() => Promise<string | undefined>) | undefined;
  /** The tenant whose chain it forwards; undefined: every tenant and the platform chain. */
  tenantId: string | undefined;
  /** Changes when the destination is edited (the forwarder restarts). */
  version: string;
}

export const destinationKeyOf = (d: { tenantId?: string | undefined; id?: string; name: string }) =>
  d.tenantId && d.id ? `tenant:${d.id}` : `install:${d.name}`;

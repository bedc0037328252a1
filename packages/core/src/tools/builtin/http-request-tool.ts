import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { Type } from '@sinclair/typebox';
import {
  ConnectionUnavailableError,
  resolveConnection,
  type HttpConfig,
  type ResolvedConnection,
} from '../../connections/connection-service.ts';
import type { CredentialVault } from '../../secrets/envelope.ts';
import { SecretUnreadableError } from '../../secrets/envelope.ts';
import { recordUse } from '../../connections/connection-health.ts';
import { ToolError, type Tool, type ToolContext } from '../tool.ts';
import {
  AddressBlockedError,
  HostUnresolvedError,
  resolveChecked,
  tenantAllowsPrivateNetwork,
  type ResolvedAddress,
  type Resolver,
} from './network-guard.ts';

export const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
export type HttpMethod = (typeof METHODS)[number];

export interface HttpRequestArgs {
  method: HttpMethod;
  url: string;
  headers?: Record<string, string>;
  body?: string | Record<string, unknown> | unknown[];
  /** A tenant http connection whose secret is sent as a header to URLs under its baseUrl. */
  connection?: string;
  timeoutMs?: number;
}

export const MAX_RESPONSE_BYTES = 64 * 1024;
export const MAX_REDIRECTS = 5;

/** Headers a step may not set: framing, routing and the idempotency key are ours. */
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'expect',
  'idempotency-key',
]);
/** Headers kept when a redirect leaves the original origin (everything else may be a credential). */
const CROSS_ORIGIN_SAFE = new Set(['accept', 'accept-language', 'user-agent']);

export interface HttpToolOptions {
  vault: CredentialVault;
  /** DNS resolution (default: the system resolver). */
  resolve?: Resolver;
  /** Addresses to treat as public: tests only (a loopback server standing in for a public one). */
  treatAsPublic?: ReadonlySet<string>;
}

/** Mutual TLS and a private CA, from an http connection (only for URLs under its base URL). */
interface TlsOptions {
  cert?: string;
  key?: string;
  ca?: string;
}

function tlsOf(connection: ResolvedConnection<HttpConfig> | undefined): TlsOptions {
  if (!connection) return {};
  const c = connection.config;
  return {
    ...(c.clientCertificate && connection.clientKey
      ? { cert: c.clientCertificate, key: connection.clientKey }
      : {}),
    ...(c.caCertificate ? { ca: c.caCertificate } : {}),
  };
}

interface Hop {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  truncated: boolean;
}

function fail(code: string, message: string, retryable = false): never {
  throw new ToolError(code, message, { retryable });
}

function originOf(url: URL): string {
  return `${url.protocol}//${url.host}`;
}

function underBase(url: URL, baseUrl: string): boolean {
  const base = new URL(baseUrl);
  if (originOf(url) !== originOf(base)) return false;
  const path = base.pathname.endsWith('/') ? base.pathname : base.pathname + '/';
  return url.pathname === base.pathname || url.pathname.startsWith(path) || base.pathname === '/';
}

function parseUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail('INVALID_URL', 'the URL is not valid');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('INVALID_URL', 'only http and https URLs');
  if (url.username || url.password) fail('INVALID_URL', 'the URL must not carry a user name or password');
  return url;
}

/** One request to one checked address; reads at most MAX_RESPONSE_BYTES of the body. */
function send(
  url: URL,
  method: string,
  headers: OutgoingHttpHeaders,
  body: Buffer | undefined,
  target: ResolvedAddress,
  signal: AbortSignal,
  tls: TlsOptions = {},
): Promise<Hop> {
  // Connect to the address that was checked, whatever DNS says now.
  const lookup: LookupFunction = (_host, options, callback) => {
    if ((options as { all?: boolean }).all)
      (callback as (e: null, a: ResolvedAddress[]) => void)(null, [target]);
    else callback(null, target.address, target.family);
  };
  const client = url.protocol === 'https:' ? https : http;
  return new Promise<Hop>((resolve, reject) => {
    const req = client.request(
      url,
      // A fresh agent per request: a pooled socket could lead to an address checked for someone else.
      { method, headers, agent: false, lookup, signal, ...(url.protocol === 'https:' ? tls : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        res.on('data', (chunk: Buffer) => {
          if (truncated) return;
          if (size + chunk.length > MAX_RESPONSE_BYTES) {
            chunks.push(chunk.subarray(0, MAX_RESPONSE_BYTES - size));
            size = MAX_RESPONSE_BYTES;
            truncated = true;
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              body: Buffer.concat(chunks),
              truncated,
            });
            res.destroy();
            return;
          }
          chunks.push(chunk);
          size += chunk.length;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            truncated,
          }),
        );
        res.on('error', (e) => (truncated ? undefined : reject(e)));
        res.on('aborted', () => (truncated ? undefined : reject(new Error('the response was cut off'))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const TEXTUAL =
  /^(text\/|application\/(json|xml|[a-z.+-]*\+json|[a-z.+-]*\+xml|x-www-form-urlencoded|javascript))/i;

function responseHeaders(h: IncomingMessage['headers']): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    if (k === 'set-cookie' || v === undefined) continue;
    out[k] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

/** An HTTP request to a public address (private ones only if the tenant allows), with redirects checked. */
export function httpRequestTool(opts: HttpToolOptions): Tool<HttpRequestArgs> {
  return {
    name: 'http.request',
    description:
      'Send an HTTP request. Private, loopback and link-local addresses are blocked unless the tenant allows them.',
    risk: 'medium',
    retryable: true,
    args: Type.Object(
      {
        method: Type.Union(METHODS.map((m) => Type.Literal(m))),
        url: Type.String({ minLength: 8, maxLength: 2048, pattern: '^[Hh][Tt][Tt][Pp][Ss]?://' }),
        headers: Type.Optional(
          Type.Record(
            Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" }),
            Type.String({ maxLength: 8192, pattern: '^[^\\r\\n\\x00]*$' }),
            { maxProperties: 50 },
          ),
        ),
        body: Type.Optional(
          Type.Union([
            Type.String({ maxLength: 1_000_000 }),
            Type.Record(Type.String(), Type.Unknown()),
            Type.Array(Type.Unknown()),
          ]),
        ),
        connection: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
        timeoutMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 120_000 })),
      },
      { additionalProperties: false },
    ),
    recipients(a) {
      try {
        return [new URL(a.url).hostname.toLowerCase()];
      } catch {
        return [a.url];
      }
    },
    preview: (a) => {
      let target = a.url;
      try {
        target = new URL(a.url).hostname;
      } catch {
        /* shown as given */
      }
      return [{ kind: 'http.request', summary: `${a.method} ${a.url}`, target }];
    },
    async execute(ctx, a) {
      // The connection, once resolved and matched to the URL: its use is recorded for health.
      const seen: { connection?: ResolvedConnection<HttpConfig> } = {};
      try {
        const out = await execute(opts, ctx, a, seen);
        if (seen.connection)
          await recordUse(ctx.withTenant, ctx.tenantId, { table: 'connections', id: seen.connection.id });
        return out;
      } catch (e) {
        if (seen.connection && e instanceof ToolError && !ctx.signal.aborted)
          await recordUse(
            ctx.withTenant,
            ctx.tenantId,
            { table: 'connections', id: seen.connection.id },
            // The server answered: a client error about this request (404, 422…) is no connection
            // failure; refused credentials (401, 403, 407) and server errors are.
            /answered 4(?!0[137])\d\d$/.test(e.message) && e.code === 'HTTP_STATUS' ? undefined : e,
            [seen.connection.secret, seen.connection.clientKey],
          );
        throw e;
      }
    },
  };
}

async function execute(
  opts: HttpToolOptions,
  ctx: ToolContext,
  a: HttpRequestArgs,
  seen: { connection?: ResolvedConnection<HttpConfig> },
) {
  let url = parseUrl(a.url);
  const userHeaders: Record<string, string> = {};
  for (const [k, v] of Object.entries(a.headers ?? {})) {
    if (RESERVED_HEADERS.has(k.toLowerCase()) || k.toLowerCase().startsWith('proxy-'))
      fail('HEADER_NOT_ALLOWED', `the header ${k} is set by Steward, not by a step`);
    userHeaders[k.toLowerCase()] = v;
  }
  let method: string = a.method;
  let body: Buffer | undefined;
  if (a.body !== undefined) {
    if (method === 'GET' || method === 'HEAD') fail('INVALID_REQUEST', `${method} requests have no body`);
    if (typeof a.body === 'string') body = Buffer.from(a.body, 'utf8');
    else {
      body = Buffer.from(JSON.stringify(a.body), 'utf8');
      userHeaders['content-type'] ??= 'application/json';
    }
  }
  const tenantAllows = await tenantAllowsPrivateNetwork(ctx);
  let connection: ResolvedConnection<HttpConfig> | undefined;
  if (a.connection !== undefined) {
    try {
      connection = await ctx.withTenant((tx) =>
        resolveConnection(opts.vault, tx, ctx.tenantId, 'http', a.connection),
      );
    } catch (e) {
      if (e instanceof ConnectionUnavailableError) fail('CONNECTION_UNAVAILABLE', e.message);
      if (e instanceof SecretUnreadableError) fail('CONNECTION_SECRET_UNREADABLE', e.message);
      throw e;
    }
    if (!underBase(url, connection.config.baseUrl))
      fail('CONNECTION_MISMATCH', `the URL is not under the base URL of connection "${connection.name}"`);
    seen.connection = connection;
  }
  const startOrigin = originOf(url);
  const timeout = AbortSignal.timeout(a.timeoutMs ?? 15_000);
  const signal = AbortSignal.any([ctx.signal, timeout]);
  let redirects = 0;
  for (;;) {
    const viaConnection = connection && underBase(url, connection.config.baseUrl) ? connection : undefined;
    const allowPrivate = tenantAllows || viaConnection?.config.allowPrivateNetwork === true;
    let target: ResolvedAddress;
    try {
      target = await resolveChecked(url.hostname, {
        allowPrivate,
        resolve: opts.resolve,
        treatAsPublic: opts.treatAsPublic,
      });
    } catch (e) {
      if (e instanceof AddressBlockedError)
        fail('ADDRESS_BLOCKED', redirects ? `a redirect led to a blocked address: ${e.message}` : e.message);
      if (e instanceof HostUnresolvedError) fail('HOST_UNRESOLVED', e.message, e.temporary);
      throw e;
    }
    const sameOrigin = originOf(url) === startOrigin;
    const headers: OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(userHeaders))
      if (sameOrigin || CROSS_ORIGIN_SAFE.has(k)) headers[k] = v;
    if (body === undefined) delete headers['content-type'];
    if (viaConnection?.secret !== undefined)
      headers[(viaConnection.config.headerName ?? 'Authorization').toLowerCase()] = viaConnection.secret;
    headers['idempotency-key'] = ctx.idempotencyKey;
    headers['user-agent'] ??= 'Steward';
    let hop: Hop;
    try {
      hop = await send(url, method, headers, body, target, signal, tlsOf(viaConnection));
    } catch (e) {
      if (ctx.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
      if (timeout.aborted) fail('HTTP_TIMEOUT', `no answer from ${url.host} in time`, true);
      const code = (e as { code?: string }).code ?? 'ERROR';
      const tls = code.startsWith('ERR_TLS') || /CERT|SSL/.test(code);
      fail(tls ? 'HTTP_TLS_FAILED' : 'HTTP_CONNECTION_FAILED', `could not reach ${url.host} (${code})`, !tls);
    }
    const location = hop.headers.location;
    if ([301, 302, 303, 307, 308].includes(hop.status) && location) {
      if (++redirects > MAX_REDIRECTS) fail('TOO_MANY_REDIRECTS', `more than ${MAX_REDIRECTS} redirects`);
      let next: URL;
      try {
        next = parseUrl(new URL(location, url).toString());
      } catch {
        return fail('INVALID_REDIRECT', 'a redirect pointed to an unusable URL');
      }
      const keepsBody = hop.status === 307 || hop.status === 308;
      if (keepsBody && body !== undefined && originOf(next) !== startOrigin)
        fail('REDIRECT_REFUSED', `refusing to resend the request body to another origin (${next.host})`);
      if (!keepsBody && method !== 'HEAD' && (hop.status === 303 || method === 'POST')) {
        method = 'GET';
        body = undefined;
      }
      url = next;
      continue;
    }
    if (hop.status >= 500 || hop.status === 408 || hop.status === 429)
      fail('HTTP_STATUS', `${url.host} answered ${hop.status}`, true);
    if (hop.status >= 400) fail('HTTP_STATUS', `${url.host} answered ${hop.status}`);
    const contentType = String(hop.headers['content-type'] ?? '');
    const textual = contentType === '' || TEXTUAL.test(contentType);
    return {
      status: hop.status,
      url: url.toString(),
      redirects,
      headers: responseHeaders(hop.headers),
      body: hop.body.toString(textual ? 'utf8' : 'base64'),
      bodyEncoding: textual ? 'utf8' : 'base64',
      truncated: hop.truncated,
    };
  }
}

import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { Readable } from 'node:stream';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  AddressBlockedError,
  HostUnresolvedError,
  resolveChecked,
  type ResolvedAddress,
  type Resolver,
} from '../tools/builtin/network-guard.ts';

/**
 * Talking to one MCP server: connecting (a one-off connection here; mcp-pool.ts keeps them open per
 * tenant and server for reuse), listing the tools, calling one. HTTP servers are reached only through the SSRF guard of the network tools: every
 * request resolves the host, checks every address and connects to the checked one; redirects are
 * not followed. Stdio servers run as a child process with only the safe default environment plus
 * the server's own (decrypted) variables.
 */

export interface McpEndpoint {
  name: string;
  transport: 'stdio' | 'http';
  command: string[] | null;
  url: string | null;
  /** stdio: environment variables; http: request headers. Decrypted, never logged. */
  secret: Record<string, string>;
  /** http: mutual TLS and a private CA (the key decrypted, never logged). */
  tls?: McpTls | undefined;
}

export interface McpNetworkOptions {
  allowPrivate: boolean;
  resolve?: Resolver | undefined;
  treatAsPublic?: ReadonlySet<string> | undefined;
}

/** A tool as an MCP server describes it (untrusted). */
export interface McpToolInfo {
  name: string;
  description?: string | undefined;
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown> | undefined;
}

/** Why an MCP server could not be used; the message is safe to store and show. */
export class McpUnavailableError extends Error {
  readonly code: string;
  readonly retryable: boolean;
  constructor(code: string, message: string, retryable = false) {
    super(message);
    this.name = 'McpUnavailableError';
    this.code = code;
    this.retryable = retryable;
  }
}

/** Mutual TLS (client certificate and key) and a private CA for an HTTP server. */
export interface McpTls {
  cert?: string;
  key?: string;
  ca?: string;
}

type FetchLike = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** fetch over node:http that connects only to addresses the SSRF guard accepted, never following redirects. */
export function guardedFetch(opts: McpNetworkOptions, tls: McpTls = {}): FetchLike {
  return async (input, init) => {
    const url = new URL(String(input));
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TypeError('only http and https');
    const target: ResolvedAddress = await resolveChecked(url.hostname, opts);
    const lookup: LookupFunction = (_host, options, callback) => {
      if ((options as { all?: boolean }).all)
        (callback as (e: null, a: ResolvedAddress[]) => void)(null, [target]);
      else callback(null, target.address, target.family);
    };
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
    let body: Buffer | undefined;
    if (init?.body !== undefined && init.body !== null) {
      body =
        typeof init.body === 'string'
          ? Buffer.from(init.body, 'utf8')
          : Buffer.from(await new Response(init.body).arrayBuffer());
    }
    const method = init?.method ?? 'GET';
    const client = url.protocol === 'https:' ? https : http;
    return new Promise<Response>((resolve, reject) => {
      const req = client.request(
        url,
        {
          method,
          headers,
          agent: false,
          lookup,
          signal: init?.signal ?? undefined,
          ...(url.protocol === 'https:' ? tls : {}),
        },
        (res) => {
          const out = new Headers();
          for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
            const k = res.rawHeaders[i]!;
            if (k.toLowerCase() === 'set-cookie') continue;
            out.append(k, res.rawHeaders[i + 1]!);
          }
          const status = res.statusCode ?? 502;
          const empty = method === 'HEAD' || status === 204 || status === 304;
          if (empty) res.resume();
          resolve(
            new Response(empty ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), {
              status: status < 200 ? 502 : status,
              headers: out,
            }),
          );
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  };
}

const CONNECT_TIMEOUT_MS = 15_000;

/** The MCP SDK (and zod) loads when a tenant first talks to an MCP server. */
let streamableHttp: typeof import('@modelcontextprotocol/sdk/client/streamableHttp.js') | undefined;

async function transportFor(endpoint: McpEndpoint, net: McpNetworkOptions): Promise<Transport> {
  if (endpoint.transport === 'stdio') {
    const { StdioClientTransport, getDefaultEnvironment } =
      await import('@modelcontextprotocol/sdk/client/stdio.js');
    const [command, ...args] = endpoint.command ?? [];
    if (!command) throw new McpUnavailableError('MCP_MISCONFIGURED', 'the stdio server has no command');
    return new StdioClientTransport({
      command,
      args,
      env: { ...getDefaultEnvironment(), ...endpoint.secret },
      stderr: 'ignore',
    });
  }
  if (!endpoint.url) throw new McpUnavailableError('MCP_MISCONFIGURED', 'the HTTP server has no URL');
  streamableHttp ??= await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
  return new streamableHttp.StreamableHTTPClientTransport(new URL(endpoint.url), {
    fetch: guardedFetch(net, endpoint.tls),
    requestInit: { headers: endpoint.secret, redirect: 'manual' },
  });
}

function translate(e: unknown, endpoint: McpEndpoint): McpUnavailableError {
  if (e instanceof McpUnavailableError) return e;
  if (e instanceof AddressBlockedError) return new McpUnavailableError('ADDRESS_BLOCKED', e.message);
  if (e instanceof HostUnresolvedError)
    return new McpUnavailableError('HOST_UNRESOLVED', e.message, e.temporary);
  const cause = (e as { cause?: unknown })?.cause;
  if (cause instanceof AddressBlockedError) return new McpUnavailableError('ADDRESS_BLOCKED', cause.message);
  if (cause instanceof HostUnresolvedError)
    return new McpUnavailableError('HOST_UNRESOLVED', cause.message, cause.temporary);
  const code = (e as { code?: unknown })?.code;
  return new McpUnavailableError(
    'MCP_UNREACHABLE',
    `could not talk to MCP server "${endpoint.name}"${typeof code === 'string' ? ` (${code})` : ''}`,
    true,
  );
}

/** The SDK's HTTP transport error with this status (none can exist before the transport was loaded). */
export function isStreamableHttpError(e: unknown, status: number): boolean {
  return !!streamableHttp && e instanceof streamableHttp.StreamableHTTPError && e.code === status;
}

/** A connected client (the caller closes it); errors are McpUnavailableErrors. */
export async function connectMcpClient(
  endpoint: McpEndpoint,
  net: McpNetworkOptions,
  signal?: AbortSignal,
): Promise<Client> {
  const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
  const client = new Client({ name: 'steward', version: '0.1.0' });
  try {
    const transport = await transportFor(endpoint, net);
    await client.connect(transport, { timeout: CONNECT_TIMEOUT_MS, signal });
  } catch (e) {
    await client.close().catch(() => {});
    throw translate(e, endpoint);
  }
  return client;
}

/** Connect, run `fn`, close, whatever happens (a one-off connection; see McpClientPool for reuse). */
export async function withMcpClient<T>(
  endpoint: McpEndpoint,
  net: McpNetworkOptions,
  fn: (client: Client) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const client = await connectMcpClient(endpoint, net, signal);
  try {
    return await fn(client);
  } finally {
    await client.close().catch(() => {});
  }
}

export const MAX_TOOLS = 200;

/** Run `fn` on a connection to the server: one-off by default, or a pooled one (McpClientPool.use). */
export type McpRunner = <T>(
  fn: (client: Client) => Promise<T>,
  opts: { signal?: AbortSignal | undefined; idempotent?: boolean },
) => Promise<T>;

/** The server's tools, live (at most MAX_TOOLS, following pagination). */
export async function listMcpTools(
  endpoint: McpEndpoint,
  net: McpNetworkOptions,
  signal?: AbortSignal,
  run: McpRunner = (fn, opts) => withMcpClient(endpoint, net, fn, opts.signal),
): Promise<McpToolInfo[]> {
  return run(
    async (client) => {
      const tools: McpToolInfo[] = [];
      let cursor: string | undefined;
      try {
        do {
          const page = await client.listTools(cursor ? { cursor } : {}, {
            timeout: CONNECT_TIMEOUT_MS,
            signal,
          });
          for (const t of page.tools)
            tools.push({
              name: t.name,
              description: t.description,
              inputSchema: t.inputSchema as Record<string, unknown>,
              annotations: t.annotations as Record<string, unknown> | undefined,
            });
          cursor = page.nextCursor;
        } while (cursor && tools.length < MAX_TOOLS);
      } catch (e) {
        throw translate(e, endpoint);
      }
      return tools.slice(0, MAX_TOOLS);
    },
    { signal, idempotent: true },
  );
}

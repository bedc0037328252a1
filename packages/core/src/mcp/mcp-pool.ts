import { createHash } from 'node:crypto';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  connectMcpClient,
  isStreamableHttpError,
  withMcpClient,
  type McpEndpoint,
  type McpNetworkOptions,
} from './mcp-client.ts';

/**
 * Open MCP connections, reused per (tenant, server) across tool calls and tool listings, so a stdio
 * server is one long-lived process instead of one process per call, and an HTTP server keeps its
 * session.
 *
 * - A connection is keyed by tenant and server id, and remembers a fingerprint of the endpoint it
 *   was opened for (command or URL, decrypted secret, TLS, network rules). Every use reads the
 *   server's current configuration first; a different fingerprint (the server was edited, here or
 *   in another process) closes the old connection and opens a new one.
 * - Closed after `idleMs` without use (default 60 s), on `closeServer` (the server was updated or
 *   deleted) and on `closeAll` (shutdown). A connection in use is closed when its last user is done.
 * - At most `max` connections (default 50): the least recently used idle one is closed to make room;
 *   when all are busy, the call runs on a connection of its own, closed afterwards.
 * - A connection that failed (an error from the transport, a stdio process that exited) is dropped;
 *   the next use reconnects. A failure on a reused connection is retried once on a fresh one when
 *   the request is safe to repeat (listing tools) or certainly did not reach the server (an HTTP
 *   session the server no longer knows, a transport that had already closed).
 */

export interface McpPoolOptions {
  idleMs?: number;
  max?: number;
}

interface Entry {
  key: string;
  fingerprint: string;
  ready: Promise<Client>;
  client: Client | undefined;
  users: number;
  lastUsed: number;
  timer: NodeJS.Timeout | undefined;
  /** No longer handed out; closed when its last user is done. */
  retired: boolean;
  closed: boolean;
}

export interface McpUseOptions {
  signal?: AbortSignal | undefined;
  /** The operation may be repeated safely (tools/list): retried once on a fresh connection. */
  idempotent?: boolean;
}

/** The fingerprint of everything a connection depends on; the secret is hashed, never kept as a key. */
export function endpointFingerprint(endpoint: McpEndpoint, net: McpNetworkOptions): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        endpoint.name,
        endpoint.transport,
        endpoint.command,
        endpoint.url,
        Object.entries(endpoint.secret).sort(),
        endpoint.tls ?? {},
        net.allowPrivate,
      ]),
    )
    .digest('hex');
}

/** An error that shows the request never reached the server, so repeating it is safe. */
function notDelivered(e: unknown): boolean {
  if (isStreamableHttpError(e, 404)) return true; // a session the server forgot
  return (e as Error)?.message === 'Not connected';
}

export class McpClientPool {
  readonly #entries = new Map<string, Entry>();
  readonly #idleMs: number;
  readonly #max: number;
  #stopped = false;
  /** Connections opened since start (tests and metrics). */
  opened = 0;

  constructor(opts: McpPoolOptions = {}) {
    this.#idleMs = opts.idleMs ?? 60_000;
    this.#max = opts.max ?? 50;
  }

  /** Open pooled connections. */
  get size(): number {
    return this.#entries.size;
  }

  static key(tenantId: string, serverId: string): string {
    return `${tenantId}/${serverId}`;
  }

  /** Run `fn` on the pooled connection of this server (opening or replacing it as needed). */
  async use<T>(
    key: string,
    endpoint: McpEndpoint,
    net: McpNetworkOptions,
    fn: (client: Client) => Promise<T>,
    opts: McpUseOptions = {},
  ): Promise<T> {
    const fingerprint = endpointFingerprint(endpoint, net);
    const entry = this.#stopped ? undefined : this.#acquire(key, fingerprint, endpoint, net);
    if (!entry) return withMcpClient(endpoint, net, fn, opts.signal);
    const fresh = entry.client === undefined;
    let released = false;
    try {
      const client = await entry.ready;
      return await fn(client);
    } catch (e) {
      void this.#retire(entry);
      if (!fresh && !opts.signal?.aborted && (opts.idempotent || notDelivered(e))) {
        released = true;
        this.#release(entry);
        const retry = this.#stopped ? undefined : this.#acquire(key, fingerprint, endpoint, net);
        if (!retry) return withMcpClient(endpoint, net, fn, opts.signal);
        try {
          return await fn(await retry.ready);
        } catch (again) {
          void this.#retire(retry);
          throw again;
        } finally {
          this.#release(retry);
        }
      }
      throw e;
    } finally {
      if (!released) this.#release(entry);
    }
  }

  /** Close the connection of one server (it was updated or deleted). */
  async closeServer(tenantId: string, serverId: string): Promise<void> {
    const entry = this.#entries.get(McpClientPool.key(tenantId, serverId));
    if (entry) await this.#retire(entry);
  }

  /** Close every connection and stop pooling (shutdown); later uses get one-off connections. */
  async closeAll(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#entries.values()].map((e) => this.#close(e)));
  }

  #acquire(
    key: string,
    fingerprint: string,
    endpoint: McpEndpoint,
    net: McpNetworkOptions,
  ): Entry | undefined {
    let entry = this.#entries.get(key);
    if (entry && entry.fingerprint !== fingerprint) {
      void this.#retire(entry);
      entry = undefined;
    }
    if (!entry) {
      if (this.#entries.size >= this.#max && !this.#evictIdle()) return undefined;
      entry = this.#open(key, fingerprint, endpoint, net);
    }
    entry.users++;
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    return entry;
  }

  #open(key: string, fingerprint: string, endpoint: McpEndpoint, net: McpNetworkOptions): Entry {
    const entry: Entry = {
      key,
      fingerprint,
      ready: undefined as unknown as Promise<Client>,
      client: undefined,
      users: 0,
      lastUsed: Date.now(),
      timer: undefined,
      retired: false,
      closed: false,
    };
    this.opened++;
    entry.ready = connectMcpClient(endpoint, net).then(
      (client) => {
        entry.client = client;
        // A stdio server that exited, or a transport that closed: drop it; the next use reconnects.
        client.onclose = () => {
          entry.closed = true;
          if (this.#entries.get(key) === entry) this.#entries.delete(key);
          if (entry.timer) clearTimeout(entry.timer);
        };
        if (entry.retired && entry.users === 0) void this.#close(entry);
        return client;
      },
      (e: unknown) => {
        entry.closed = true;
        if (this.#entries.get(key) === entry) this.#entries.delete(key);
        throw e;
      },
    );
    // Callers see the rejection; the pool itself must not report it as unhandled.
    entry.ready.catch(() => {});
    this.#entries.set(key, entry);
    return entry;
  }

  #release(entry: Entry): void {
    entry.users = Math.max(0, entry.users - 1);
    entry.lastUsed = Date.now();
    if (entry.users > 0 || entry.closed) return;
    if (entry.retired) {
      void this.#close(entry);
      return;
    }
    entry.timer = setTimeout(() => {
      if (entry.users === 0) void this.#close(entry);
    }, this.#idleMs);
    entry.timer.unref();
  }

  /** Hand it out no more; close it now if nobody uses it. */
  async #retire(entry: Entry): Promise<void> {
    entry.retired = true;
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key);
    if (entry.users === 0) await this.#close(entry);
  }

  /** Close the least recently used idle connection; false when every one is busy. */
  #evictIdle(): boolean {
    let oldest: Entry | undefined;
    for (const e of this.#entries.values())
      if (e.users === 0 && (!oldest || e.lastUsed < oldest.lastUsed)) oldest = e;
    if (!oldest) return false;
    void this.#retire(oldest);
    return true;
  }

  async #close(entry: Entry): Promise<void> {
    entry.retired = true;
    if (this.#entries.get(entry.key) === entry) this.#entries.delete(entry.key);
    if (entry.timer) clearTimeout(entry.timer);
    entry.timer = undefined;
    if (entry.closed) return;
    const client = entry.client ?? (await entry.ready.catch(() => undefined));
    if (entry.closed) return;
    entry.closed = true;
    await client?.close().catch(() => {});
  }
}

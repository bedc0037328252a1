import { request as httpsRequest } from 'node:https';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import type { AuditEntry } from '../audit/audit-log.ts';
import { resolveChecked, type Resolver } from '../tools/builtin/network-guard.ts';
import { httpsBatch, octetFrame, syslogMessage } from './siem-message.ts';
import type { HttpsConfig, ResolvedDestination, SyslogConfig } from './siem-destination.ts';

/**
 * Transports. `send` resolves only once the destination acknowledged the whole batch; any error
 * (refused, reset, timeout, non-2xx) rejects, and the forwarder sends the same entries again later.
 */
export interface Sender {
  send(tenantId: string, entries: AuditEntry[]): Promise<void>;
  close(): void;
}

export interface SenderOptions {
  /** Syslog has no application-level acknowledgement: a batch counts as delivered once written and the
   * connection is still open this long afterwards (a receiver that went away resets it first). */
  settleMs: number;
  /** Longest wait for a connection, a write or a response. */
  timeoutMs: number;
  resolve?: Resolver | undefined;
  /** Tests: addresses treated as public. */
  treatAsPublic?: ReadonlySet<string> | undefined;
}

export class SiemDeliveryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SiemDeliveryError';
  }
}

/** The address to connect to: resolved once per connection and checked against the network guard. */
async function target(host: string, dest: ResolvedDestination, opts: SenderOptions) {
  const allowPrivate = dest.tenantId === undefined || dest.config.allowPrivateNetwork === true;
  const { address, family } = await resolveChecked(host, {
    allowPrivate,
    resolve: opts.resolve,
    treatAsPublic: opts.treatAsPublic,
  });
  const bare = host.replace(/^\[|\]$/g, '');
  return { address, family, servername: isIP(bare) ? undefined : bare };
}

export function createSender(dest: ResolvedDestination, opts: SenderOptions): Sender {
  return dest.kind === 'syslog'
    ? new SyslogSender(dest, dest.config as SyslogConfig, opts)
    : new HttpsSender(dest, dest.config as HttpsConfig, opts);
}

class SyslogSender implements Sender {
  #socket: Socket | undefined;
  #broken: Error | undefined;
  readonly #dest: ResolvedDestination;
  readonly #config: SyslogConfig;
  readonly #opts: SenderOptions;
  readonly #hostname: string;

  constructor(dest: ResolvedDestination, config: SyslogConfig, opts: SenderOptions) {
    this.#dest = dest;
    this.#config = config;
    this.#opts = opts;
    this.#hostname = config.hostname ?? osHostname();
  }

  async #connect(): Promise<Socket> {
    if (this.#socket && !this.#broken && !this.#socket.destroyed) return this.#socket;
    this.close();
    const { address, servername } = await target(this.#config.host, this.#dest, this.#opts);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s: Socket = this.#config.tls
        ? tlsConnect({
            host: address,
            port: this.#config.port,
            servername,
            ...(this.#config.caCert ? { ca: this.#config.caCert } : {}),
          })
        : netConnect({ host: address, port: this.#config.port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new SiemDeliveryError('connection timed out'));
      }, this.#opts.timeoutMs);
      s.once(this.#config.tls ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', (e) => {
        clearTimeout(timer);
        reject(new SiemDeliveryError(`cannot connect: ${e.message}`));
      });
    });
    this.#broken = undefined;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    // A receiver never writes to us: data or an end means the connection is going away.
    const breakWith = (e: Error) => {
      // A late event of a connection already replaced says nothing about the current one.
      if (this.#socket === socket) this.#broken ??= e;
      socket.destroy();
    };
    socket.on('error', (e) => breakWith(new SiemDeliveryError(`connection failed: ${e.message}`)));
    socket.on('end', () => breakWith(new SiemDeliveryError('the receiver closed the connection')));
    socket.on('close', () => breakWith(new SiemDeliveryError('the connection closed')));
    socket.on('data', () => {});
    this.#socket = socket;
    return socket;
  }

  async send(_tenantId: string, entries: AuditEntry[]): Promise<void> {
    const socket = await this.#connect();
    const opts = { facility: this.#config.facility ?? 13, hostname: this.#hostname };
    const payload = Buffer.concat(entries.map((e) => octetFrame(syslogMessage(e, opts))));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#broken ??= new SiemDeliveryError('write timed out (the receiver does not read)');
        socket.destroy();
        reject(this.#broken);
      }, this.#opts.timeoutMs);
      socket.write(payload, (error) => {
        clearTimeout(timer);
        if (error) reject(new SiemDeliveryError(`write failed: ${error.message}`));
        else resolve();
      });
    });
    // Written to the kernel; a receiver that is gone resets the connection within a round trip.
    await new Promise((r) => setTimeout(r, this.#opts.settleMs));
    if (this.#broken || socket.destroyed) {
      const e = this.#broken ?? new SiemDeliveryError('the connection closed');
      this.close();
      throw e;
    }
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = undefined;
  }
}

class HttpsSender implements Sender {
  readonly #dest: ResolvedDestination;
  readonly #config: HttpsConfig;
  readonly #opts: SenderOptions;

  constructor(dest: ResolvedDestination, config: HttpsConfig, opts: SenderOptions) {
    this.#dest = dest;
    this.#config = config;
    this.#opts = opts;
  }

  async send(tenantId: string, entries: AuditEntry[]): Promise<void> {
    const url = new URL(this.#config.url);
    const { address, family, servername } = await target(url.hostname, this.#dest, this.#opts);
    const body = Buffer.from(httpsBatch(this.#dest.name, tenantId, entries), 'utf8');
    const headers: Record<string, string> = {
      ...this.#config.headers,
      'content-type': 'application/json',
      'content-length': String(body.length),
      'user-agent': 'steward-siem',
      'x-steward-tenant': tenantId,
      'x-steward-first-seq': String(entries[0]?.seq ?? ''),
      'x-steward-last-seq': String(entries.at(-1)?.seq ?? ''),
    };
    if (this.#dest.secret) {
      headers[this.#config.tokenHeader ?? 'authorization'] =
        (this.#config.tokenPrefix ?? 'Bearer ') + this.#dest.secret;
    }
    const timeoutMs = (this.#config.timeoutSeconds ?? 0) * 1000 || this.#opts.timeoutMs;
    await new Promise<void>((resolve, reject) => {
      const req = httpsRequest(
        {
          protocol: 'https:',
          hostname: url.hostname,
          port: url.port || 443,
          path: url.pathname + url.search,
          method: 'POST',
          headers,
          servername,
          agent: false,
          ...(this.#config.caCert ? { ca: this.#config.caCert } : {}),
          // Connect to the address the guard checked (no second DNS answer).
          lookup: ((_h: string, o: { all?: boolean }, cb: (...args: unknown[]) => void) =>
            o?.all ? cb(null, [{ address, family }]) : cb(null, address, family)) as never,
          timeout: timeoutMs,
        },
        (response) => {
          response.resume();
          response.on('end', () => {
            const status = response.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new SiemDeliveryError(`the endpoint answered ${status}`));
          });
          response.on('error', (e) => reject(new SiemDeliveryError(`response failed: ${e.message}`)));
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new SiemDeliveryError(`request failed: ${e.message}`)));
      req.end(body);
    });
  }

  close(): void {}
}

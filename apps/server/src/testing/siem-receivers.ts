import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServer as createTlsServer } from 'node:tls';
import { promisify } from 'node:util';
import { parseSyslog, readOctetFrames, SD_ID } from '@steward/core/siem/siem-message';

/** What a receiver saw of one entry: enough to dedupe by seq and to verify the chain. */
export interface Received {
  tenantId: string;
  seq: number;
  hash: string;
  prevHash: string;
  action: string;
}

/** A self-signed certificate for localhost and 127.0.0.1 (needs the openssl program). */
export async function selfSignedCert(): Promise<{ key: string; cert: string } | undefined> {
  const dir = await mkdtemp(path.join(tmpdir(), 'steward-cert-'));
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      path.join(dir, 'key.pem'),
      '-out',
      path.join(dir, 'cert.pem'),
      '-days',
      '1',
      '-subj',
      '/CN=localhost',
      '-addext',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
    ]);
    return {
      key: await readFile(path.join(dir, 'key.pem'), 'utf8'),
      cert: await readFile(path.join(dir, 'cert.pem'), 'utf8'),
    };
  } catch {
    return undefined;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Per-tenant view of a receiver: seqs in arrival order, duplicates included. */
export class ReceivedLog {
  readonly all: Received[] = [];
  add(r: Received) {
    this.all.push(r);
  }
  seqs(tenantId: string): number[] {
    return this.all.filter((r) => r.tenantId === tenantId).map((r) => r.seq);
  }
  /** Distinct seqs of a tenant, in order of first arrival. */
  unique(tenantId: string): number[] {
    return [...new Set(this.seqs(tenantId))];
  }
  duplicates(tenantId: string): number {
    return this.seqs(tenantId).length - this.unique(tenantId).length;
  }
}

/** A syslog receiver over TCP or TLS that parses RFC 5424 messages framed by octet counting. */
export class SyslogReceiver {
  readonly log = new ReceivedLog();
  /** Every frame that failed to parse (must stay empty). */
  readonly malformed: string[] = [];
  port = 0;
  #server: Server | undefined;
  #sockets = new Set<Socket>();
  readonly #tls: { key: string; cert: string } | undefined;

  constructor(tls?: { key: string; cert: string }) {
    this.#tls = tls;
  }

  async start(): Promise<void> {
    const onSocket = (socket: Socket) => {
      this.#sockets.add(socket);
      socket.on('close', () => this.#sockets.delete(socket));
      socket.on('error', () => {});
      let buffer = Buffer.alloc(0);
      socket.on('data', (chunk: Buffer) => {
        buffer = Buffer.concat([buffer, chunk]);
        const { frames, rest } = readOctetFrames(buffer);
        buffer = Buffer.from(rest);
        for (const f of frames) {
          try {
            const m = parseSyslog(f);
            const sd = m.structuredData[SD_ID]!;
            const body = JSON.parse(m.msg) as { seq: number; hash: string; tenantId: string; action: string };
            if (
              m.version !== 1 ||
              m.appName !== 'steward' ||
              body.seq !== Number(sd.seq) ||
              body.hash !== sd.hash
            ) {
              throw new Error('header and body disagree');
            }
            this.log.add({
              tenantId: sd.tenant!,
              seq: Number(sd.seq),
              hash: sd.hash!,
              prevHash: sd.prevHash!,
              action: body.action,
            });
          } catch (error) {
            this.malformed.push(`${(error as Error).message}: ${f.toString('utf8').slice(0, 200)}`);
          }
        }
      });
    };
    const server = this.#tls
      ? createTlsServer({ key: this.#tls.key, cert: this.#tls.cert }, onSocket)
      : createNetServer(onSocket);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  /** Go down: stop listening and drop every connection. */
  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server = undefined;
  }
}

/** An HTTPS receiver of JSON batches; `failWith` makes it answer an error status instead. */
export class HttpsReceiver {
  readonly log = new ReceivedLog();
  readonly authorizations = new Set<string>();
  failWith: number | undefined;
  rejected = 0;
  port = 0;
  #server: HttpsServer | undefined;
  readonly #tls: { key: string; cert: string };

  constructor(tls: { key: string; cert: string }) {
    this.#tls = tls;
  }

  async start(): Promise<void> {
    const server = createHttpsServer({ key: this.#tls.key, cert: this.#tls.cert }, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (this.failWith) {
          this.rejected++;
          res.writeHead(this.failWith).end();
          return;
        }
        this.authorizations.add(String(req.headers.authorization));
        const batch = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          tenantId: string;
          entries: { tenantId: string; seq: number; hash: string; prevHash: string; action: string }[];
        };
        for (const e of batch.entries) {
          this.log.add({
            tenantId: e.tenantId,
            seq: e.seq,
            hash: e.hash,
            prevHash: e.prevHash,
            action: e.action,
          });
        }
        res.writeHead(202, { 'content-type': 'application/json' }).end('{"ok":true}');
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as { port: number }).port;
    this.#server = server;
  }

  async stop(): Promise<void> {
    this.#server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.#server ? this.#server.close(() => resolve()) : resolve()));
    this.#server = undefined;
  }
}

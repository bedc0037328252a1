import { createCipheriv, createDecipheriv, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for the Vault / OpenBao transit engine (Vault itself is not installable in
 * this environment). It implements the endpoints Steward uses the way Vault does: token header,
 * versioned aes256-gcm96 keys, `vault:v<N>:<base64(nonce || ciphertext || tag)>` ciphertext,
 * min_decryption_version, encrypt / decrypt / rewrap / keys/:name / keys/:name/rotate, and Vault's
 * `{"errors": [...]}` error bodies with the same status codes.
 */
export interface VaultTransitServer {
  url: string;
  token: string;
  /** Request log: method and path (never bodies). */
  requests: string[];
  /** Raise min_decryption_version (old versions no longer decrypt, as in Vault). */
  setMinDecryptionVersion(key: string, version: number): void;
  latestVersion(key: string): number;
  close(): Promise<void>;
}

interface TransitKey {
  versions: Map<number, Buffer>;
  latest: number;
  minDecryption: number;
}

export async function startVaultTransitServer(
  opts: { mount?: string; keys?: string[] } = {},
): Promise<VaultTransitServer> {
  const mount = opts.mount ?? 'transit';
  const token = 'hvs.' + randomBytes(18).toString('base64url');
  const keys = new Map<string, TransitKey>();
  const requests: string[] = [];
  const createKey = (name: string) =>
    keys.set(name, { versions: new Map([[1, randomBytes(32)]]), latest: 1, minDecryption: 1 });
  for (const k of opts.keys ?? ['steward']) createKey(k);

  const send = (res: ServerResponse, status: number, body?: unknown) => {
    res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
    res.end(body === undefined ? undefined : JSON.stringify(body));
  };
  const fail = (res: ServerResponse, status: number, ...errors: string[]) => send(res, status, { errors });

  const encrypt = (key: TransitKey, plaintext: Buffer) => {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key.versions.get(key.latest)!, nonce);
    const out = Buffer.concat([nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
    return { ciphertext: `vault:v${key.latest}:${out.toString('base64')}`, key_version: key.latest };
  };
  const decrypt = (key: TransitKey, ciphertext: unknown): Buffer | string => {
    const m = typeof ciphertext === 'string' ? /^vault:v(\d+):([A-Za-z0-9+/=]+)$/.exec(ciphertext) : null;
    if (!m) return 'invalid ciphertext: no prefix';
    const version = Number(m[1]);
    if (version < key.minDecryption)
      return 'ciphertext or signature version is disallowed by policy (too old)';
    const k = key.versions.get(version);
    if (!k) return 'invalid key version';
    const raw = Buffer.from(m[2]!, 'base64');
    if (raw.length < 28) return 'invalid ciphertext length';
    try {
      const d = createDecipheriv('aes-256-gcm', k, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([d.update(raw.subarray(12, raw.length - 16)), d.final()]);
    } catch {
      return 'cipher: message authentication failed';
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(`${req.method} ${url.pathname}`);
    const given = Buffer.from(String(req.headers['x-vault-token'] ?? ''));
    const want = Buffer.from(token);
    if (given.length !== want.length || !timingSafeEqual(given, want))
      return fail(res, 403, 'permission denied');
    const prefix = `/v1/${mount}/`;
    if (!url.pathname.startsWith(prefix)) return fail(res, 404, `no handler for route "${url.pathname}"`);
    const parts = url.pathname.slice(prefix.length).split('/').map(decodeURIComponent);
    let body: Record<string, unknown> = {};
    if (chunks.length) {
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        return fail(res, 400, 'failed to parse JSON input');
      }
    }
    const [op, name, sub] = parts;
    if (!name) return fail(res, 404, 'missing key name');
    const key = keys.get(name);
    if (op === 'keys' && req.method === 'GET' && !sub) {
      if (!key) return fail(res, 404);
      return send(res, 200, {
        data: {
          name,
          type: 'aes256-gcm96',
          latest_version: key.latest,
          min_decryption_version: key.minDecryption,
          keys: Object.fromEntries([...key.versions.keys()].map((v) => [String(v), 1700000000 + v])),
        },
      });
    }
    if (req.method !== 'POST') return fail(res, 405, 'unsupported operation');
    if (op === 'keys' && sub === 'rotate') {
      if (!key) return fail(res, 400, 'key not found');
      key.latest++;
      key.versions.set(key.latest, randomBytes(32));
      return send(res, 200, { data: { name, latest_version: key.latest } });
    }
    if (op === 'keys' && sub === 'config') {
      if (!key) return fail(res, 400, 'key not found');
      const min = body.min_decryption_version;
      if (min !== undefined) {
        if (typeof min !== 'number' || !Number.isInteger(min) || min < 1 || min > key.latest) {
          return fail(res, 400, 'min decryption version must be between 1 and the latest version');
        }
        key.minDecryption = min;
      }
      return send(res, 200, {
        data: { name, min_decryption_version: key.minDecryption, latest_version: key.latest },
      });
    }
    if (op === 'encrypt') {
      if (typeof body.plaintext !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(body.plaintext)) {
        return fail(res, 400, 'failed to base64-decode plaintext');
      }
      if (!key) createKey(name); // Vault upserts on encrypt
      return send(res, 200, { data: encrypt(keys.get(name)!, Buffer.from(body.plaintext, 'base64')) });
    }
    if (!key) return fail(res, 400, 'encryption key not found');
    if (op === 'decrypt') {
      const out = decrypt(key, body.ciphertext);
      if (typeof out === 'string') return fail(res, 400, out);
      return send(res, 200, { data: { plaintext: out.toString('base64') } });
    }
    if (op === 'rewrap') {
      const out = decrypt(key, body.ciphertext);
      if (typeof out === 'string') return fail(res, 400, out);
      return send(res, 200, { data: encrypt(key, out) });
    }
    return fail(res, 404, `no handler for route "${url.pathname}"`);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => fail(res, 500, 'internal error'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    token,
    requests,
    setMinDecryptionVersion(name, version) {
      keys.get(name)!.minDecryption = version;
    },
    latestVersion: (name) => keys.get(name)!.latest,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

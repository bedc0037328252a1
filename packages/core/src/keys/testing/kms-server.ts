import { createCipheriv, createDecipheriv, randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for AWS KMS speaking its JSON 1.1 protocol (`X-Amz-Target: TrentService.*`,
 * `application/x-amz-json-1.1`, base64 blobs, `__type` errors) for Encrypt, Decrypt and ReEncrypt.
 * Keys have backing-key versions (RotateKey here stands for KMS automatic rotation); a ciphertext
 * blob names its key and backing version, and the encryption context is authenticated data, as in
 * KMS. Requests must carry a SigV4 Authorization header for the expected access key id (the
 * signature itself is not recomputed).
 */
export interface KmsServer {
  url: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  createKey(alias?: string): string;
  /** Add a backing key version (what KMS automatic rotation does). */
  rotateKey(keyId: string): void;
  disableKey(keyId: string): void;
  /** Operations called, in order. */
  calls: string[];
  close(): Promise<void>;
}

interface Key {
  arn: string;
  backing: Buffer[];
  enabled: boolean;
}

export async function startKmsServer(): Promise<KmsServer> {
  const region = 'eu-west-1';
  const account = '111122223333';
  const credentials = {
    accessKeyId: 'AKIA' + randomBytes(8).toString('hex').toUpperCase(),
    secretAccessKey: randomBytes(20).toString('base64'),
  };
  const keys = new Map<string, Key>();
  const aliases = new Map<string, string>();
  const calls: string[] = [];

  const createKey = (alias?: string) => {
    const id = randomUUID();
    const arn = `arn:aws:kms:${region}:${account}:key/${id}`;
    keys.set(id, { arn, backing: [randomBytes(32)], enabled: true });
    if (alias) aliases.set(alias, id);
    return id;
  };
  const resolve = (keyId: unknown): Key | undefined => {
    if (typeof keyId !== 'string') return undefined;
    let id = keyId;
    if (id.startsWith('arn:aws:kms:')) {
      const tail = id.split(':').slice(5).join(':');
      id = tail.startsWith('alias/') ? (aliases.get(tail) ?? '') : tail.replace(/^key\//, '');
    } else if (id.startsWith('alias/')) id = aliases.get(id) ?? '';
    return keys.get(id);
  };
  const ctxAad = (ctx: unknown) => {
    const entries = Object.entries((ctx ?? {}) as Record<string, string>).sort(([a], [b]) =>
      a < b ? -1 : 1,
    );
    return Buffer.from(JSON.stringify(entries));
  };
  class KmsError extends Error {
    constructor(
      readonly type: string,
      message: string,
    ) {
      super(message);
    }
  }
  const encrypt = (key: Key, plaintext: Buffer, ctx: unknown) => {
    if (!key.enabled) throw new KmsError('DisabledException', `${key.arn} is disabled.`);
    if (plaintext.length < 1 || plaintext.length > 4096)
      throw new KmsError('ValidationException', 'Plaintext length');
    const version = key.backing.length - 1;
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', key.backing[version]!, nonce);
    c.setAAD(ctxAad(ctx));
    const body = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
    const arn = Buffer.from(key.arn);
    const header = Buffer.alloc(6);
    header.writeUInt16BE(arn.length, 0);
    header.writeUInt32BE(version, 2);
    return Buffer.concat([Buffer.from('KMS1'), header, arn, nonce, body]);
  };
  const decrypt = (blob: Buffer, ctx: unknown, expected?: Key): { key: Key; plaintext: Buffer } => {
    const invalid = () => new KmsError('InvalidCiphertextException', '');
    if (blob.length < 10 || blob.subarray(0, 4).toString() !== 'KMS1') throw invalid();
    const arnLen = blob.readUInt16BE(4);
    const version = blob.readUInt32BE(6);
    const arn = blob.subarray(10, 10 + arnLen).toString();
    const key = resolve(arn);
    if (!key) throw invalid();
    if (expected && expected !== key)
      throw new KmsError(
        'IncorrectKeyException',
        'The key ID in the request does not identify a CMK that can perform this operation.',
      );
    if (!key.enabled) throw new KmsError('DisabledException', `${key.arn} is disabled.`);
    const backing = key.backing[version];
    const rest = blob.subarray(10 + arnLen);
    if (!backing || rest.length < 28) throw invalid();
    try {
      const d = createDecipheriv('aes-256-gcm', backing, rest.subarray(0, 12));
      d.setAAD(ctxAad(ctx));
      d.setAuthTag(rest.subarray(rest.length - 16));
      return { key, plaintext: Buffer.concat([d.update(rest.subarray(12, rest.length - 16)), d.final()]) };
    } catch {
      throw invalid();
    }
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(body));
    };
    const auth = String(req.headers.authorization ?? '');
    if (!auth.startsWith(`AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/`)) {
      return send(400, {
        __type: 'UnrecognizedClientException',
        message: 'The security token included in the request is invalid.',
      });
    }
    const target = String(req.headers['x-amz-target'] ?? '');
    if (req.method !== 'POST' || !target.startsWith('TrentService.')) {
      return send(400, { __type: 'UnknownOperationException', message: '' });
    }
    const op = target.slice('TrentService.'.length);
    calls.push(op);
    let input: Record<string, unknown>;
    try {
      input = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown>;
    } catch {
      return send(400, { __type: 'SerializationException', message: '' });
    }
    const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : '', 'base64');
    try {
      if (op === 'Encrypt') {
        const key = resolve(input.KeyId);
        if (!key) throw new KmsError('NotFoundException', `Key '${String(input.KeyId)}' does not exist`);
        const blob = encrypt(key, b64(input.Plaintext), input.EncryptionContext);
        return send(200, {
          CiphertextBlob: blob.toString('base64'),
          KeyId: key.arn,
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        });
      }
      if (op === 'Decrypt') {
        const expected = input.KeyId === undefined ? undefined : resolve(input.KeyId);
        if (input.KeyId !== undefined && !expected)
          throw new KmsError('NotFoundException', 'Key does not exist');
        const { key, plaintext } = decrypt(b64(input.CiphertextBlob), input.EncryptionContext, expected);
        return send(200, {
          KeyId: key.arn,
          Plaintext: plaintext.toString('base64'),
          EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        });
      }
      if (op === 'ReEncrypt') {
        const source = input.SourceKeyId === undefined ? undefined : resolve(input.SourceKeyId);
        const dest = resolve(input.DestinationKeyId);
        if (!dest)
          throw new KmsError('NotFoundException', `Key '${String(input.DestinationKeyId)}' does not exist`);
        const { key, plaintext } = decrypt(b64(input.CiphertextBlob), input.SourceEncryptionContext, source);
        const blob = encrypt(dest, plaintext, input.DestinationEncryptionContext);
        return send(200, {
          CiphertextBlob: blob.toString('base64'),
          SourceKeyId: key.arn,
          KeyId: dest.arn,
          SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
          DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
        });
      }
      return send(400, { __type: 'UnknownOperationException', message: op });
    } catch (error) {
      if (error instanceof KmsError) return send(400, { __type: error.type, message: error.message });
      return send(500, { __type: 'KMSInternalException', message: '' });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    region,
    credentials,
    createKey,
    rotateKey: (keyId) => void resolve(keyId)!.backing.push(randomBytes(32)),
    disableKey: (keyId) => void (resolve(keyId)!.enabled = false),
    calls,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

import { createPrivateKey, createPublicKey, hkdfSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * The installation's master secret (32 bytes). Every other key is derived from it with HKDF,
 * so replicas that share STEWARD_MASTER_KEY agree on token, audit and database-role keys.
 */
export class MasterKey {
  readonly #secret: Buffer;

  constructor(secret: Buffer) {
    if (secret.length !== 32) throw new Error('the master key must be 32 bytes');
    this.#secret = Buffer.from(secret);
  }

  /** A 32-byte key for one purpose. */
  derive(purpose: string): Buffer {
    return Buffer.from(hkdfSync('sha256', this.#secret, Buffer.alloc(0), 'steward:' + purpose, 32));
  }

  /** An Ed25519 key pair for one purpose (the private key never leaves this process). */
  signingKeyPair(purpose: string): { privateKey: KeyObject; publicKey: KeyObject } {
    const seed = this.derive('ed25519:' + purpose);
    const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
    const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
    return { privateKey, publicKey: createPublicKey(privateKey) };
  }

  toJSON(): string {
    return '[master key]';
  }
}

/** Parse STEWARD_MASTER_KEY: 64 hex characters or base64 of 32 bytes. */
export function parseMasterKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(t)) {
    const b = Buffer.from(t, 'base64');
    if (b.length === 32) return b;
  }
  return undefined;
}

/** The key from the environment, else the data directory's key file, created on first use (0600). */
export async function loadMasterKey(envValue: string | undefined, dataDir: string): Promise<MasterKey> {
  if (envValue) {
    const parsed = parseMasterKey(envValue);
    if (!parsed) throw new Error('STEWARD_MASTER_KEY must be 32 bytes as 64 hex characters or base64');
    return new MasterKey(parsed);
  }
  const file = path.join(dataDir, 'master.key');
  if (!existsSync(file)) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    // Written under a private name, then linked into place (which fails if the file exists): a process
    // starting at the same moment sees no key file or a complete one, never a half-written one.
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}`;
    await writeFile(tmp, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' });
    try {
      await link(tmp, file).catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      });
    } finally {
      await rm(tmp, { force: true });
    }
  }
  const parsed = parseMasterKey(await readFile(file, 'utf8'));
  if (!parsed) throw new Error(`${file} does not hold a valid master key`);
  return new MasterKey(parsed);
}

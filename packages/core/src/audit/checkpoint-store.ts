import { sign, verify, type KeyObject } from 'node:crypto';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { canonicalJson } from '../crypto/canonical-json.ts';
import type { MasterKey } from '../crypto/master-key.ts';

export interface Checkpoint {
  tenantId: string;
  seq: number;
  hash: string;
  at: string;
  /** Ed25519 over the canonical JSON of the four fields above, base64. */
  signature: string;
}

/**
 * Signed checkpoints of each tenant's chain head, appended to a file in the data directory:
 * outside the database, so whoever can rewrite the database cannot rewrite these. The signing key
 * is derived from the master key, which the database never sees.
 */
export class CheckpointStore {
  readonly file: string;
  readonly #privateKey: KeyObject;
  readonly publicKey: KeyObject;

  constructor(dataDir: string, master: MasterKey) {
    this.file = path.join(dataDir, 'audit', 'checkpoints.jsonl');
    const pair = master.signingKeyPair('audit-checkpoints');
    this.#privateKey = pair.privateKey;
    this.publicKey = pair.publicKey;
  }

  publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  async write(tenantId: string, seq: number, hash: string): Promise<Checkpoint> {
    const body = { tenantId, seq, hash, at: new Date().toISOString() };
    const signature = sign(null, Buffer.from(canonicalJson(body)), this.#privateKey).toString('base64');
    const cp: Checkpoint = { ...body, signature };
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    await appendFile(this.file, JSON.stringify(cp) + '\n', { mode: 0o600 });
    return cp;
  }

  isValid(cp: Checkpoint): boolean {
    try {
      const { signature, ...body } = cp;
      return verify(null, Buffer.from(canonicalJson(body)), this.publicKey, Buffer.from(signature, 'base64'));
    } catch {
      return false;
    }
  }

  /** All checkpoints (of one tenant, when given) in file order, with their signature status. */
  async list(tenantId?: string): Promise<{ checkpoint: Checkpoint; valid: boolean }[]> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch {
      return [];
    }
    const out: { checkpoint: Checkpoint; valid: boolean }[] = [];
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let cp: Checkpoint;
      try {
        cp = JSON.parse(line) as Checkpoint;
      } catch {
        continue;
      }
      if (tenantId && cp.tenantId !== tenantId) continue;
      out.push({ checkpoint: cp, valid: this.isValid(cp) });
    }
    return out;
  }

  /** The validly signed checkpoint with the highest sequence number for a tenant. */
  async latest(tenantId: string): Promise<Checkpoint | undefined> {
    let best: Checkpoint | undefined;
    for (const { checkpoint, valid } of await this.list(tenantId)) {
      if (valid && (!best || checkpoint.seq > best.seq)) best = checkpoint;
    }
    return best;
  }
}

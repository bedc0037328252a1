import { randomBytes, sign, verify } from 'node:crypto';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadMasterKey, MasterKey, parseMasterKey } from './master-key.ts';

const HEX = 'a'.repeat(64);
const master = new MasterKey(Buffer.from(HEX, 'hex'));

describe('MasterKey', () => {
  it('derives the same key for the same purpose, in any instance', () => {
    const again = new MasterKey(Buffer.from(HEX, 'hex'));
    expect(master.derive('audit-chain:t1').equals(again.derive('audit-chain:t1'))).toBe(true);
    expect(master.derive('x')).toHaveLength(32);
  });

  it('derives what it derived before (changing this would break every installation’s chains and tokens)', () => {
    expect(master.derive('audit-chain:00000000-0000-0000-0000-000000000000').toString('hex')).toBe(
      'c86bd0587674a0db9de1c4af50ea09c549d8acb0409c23eba113627ee639d162',
    );
    expect(
      master
        .signingKeyPair('audit-checkpoints')
        .publicKey.export({ type: 'spki', format: 'der' })
        .toString('base64'),
    ).toBe('MCowBQYDK2VwAyEAegMJuSORj206EK6ZCXf31qW4VQOXsAiqL7OwJlZgRvk=');
  });

  it('separates purposes: different purposes, and different secrets, give unrelated keys', () => {
    const purposes = [
      'audit-chain:a',
      'audit-chain:b',
      'access-tokens',
      'database-runtime-role',
      'ed25519:access-tokens',
      '',
    ];
    const keys = purposes.map((p) => master.derive(p).toString('hex'));
    expect(new Set(keys).size).toBe(purposes.length);
    const other = new MasterKey(randomBytes(32));
    expect(other.derive('audit-chain:a').equals(master.derive('audit-chain:a'))).toBe(false);
  });

  it('gives a stable Ed25519 pair per purpose that signs and verifies', () => {
    const a = master.signingKeyPair('audit-checkpoints');
    const b = new MasterKey(Buffer.from(HEX, 'hex')).signingKeyPair('audit-checkpoints');
    const c = master.signingKeyPair('access-tokens');
    const der = (k: typeof a) => k.publicKey.export({ type: 'spki', format: 'der' }).toString('hex');
    expect(a.publicKey.asymmetricKeyType).toBe('ed25519');
    expect(der(a)).toBe(der(b));
    expect(der(a)).not.toBe(der(c));
    const message = Buffer.from('checkpoint');
    const signature = sign(null, message, a.privateKey);
    expect(verify(null, message, b.publicKey, signature)).toBe(true);
    expect(verify(null, message, c.publicKey, signature)).toBe(false);
  });

  it('accepts only 32 bytes', () => {
    expect(() => new MasterKey(Buffer.alloc(31))).toThrow('32 bytes');
    expect(() => new MasterKey(Buffer.alloc(33))).toThrow('32 bytes');
  });

  it('never serialises its secret', () => {
    expect(JSON.stringify({ master })).toBe('{"master":"[master key]"}');
    expect(JSON.stringify({ master })).not.toContain('aaaa');
  });
});

describe('parseMasterKey', () => {
  const bytes = randomBytes(32);

  it('reads 64 hex characters and base64 (padded or not, standard or URL-safe) of 32 bytes', () => {
    expect(parseMasterKey(bytes.toString('hex'))?.equals(bytes)).toBe(true);
    expect(parseMasterKey(bytes.toString('hex').toUpperCase())?.equals(bytes)).toBe(true);
    expect(parseMasterKey(bytes.toString('base64'))?.equals(bytes)).toBe(true);
    expect(parseMasterKey(bytes.toString('base64').replace(/=$/, ''))?.equals(bytes)).toBe(true);
    expect(parseMasterKey(bytes.toString('base64url'))?.equals(bytes)).toBe(true);
    expect(parseMasterKey(`  ${bytes.toString('hex')}\n`)?.equals(bytes)).toBe(true);
  });

  it('rejects anything else', () => {
    for (const bad of [
      '',
      'secret',
      'a'.repeat(63),
      'a'.repeat(65),
      'g'.repeat(64),
      randomBytes(16).toString('base64'),
      randomBytes(48).toString('base64'),
      randomBytes(32).toString('hex') + 'ff',
    ]) {
      expect(parseMasterKey(bad), JSON.stringify(bad)).toBeUndefined();
    }
  });
});

describe('loadMasterKey', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'steward-master-key-'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('uses STEWARD_MASTER_KEY when set, and writes no file', async () => {
    const dataDir = path.join(dir, 'from-env');
    const key = await loadMasterKey(HEX, dataDir);
    expect(key.derive('p').equals(master.derive('p'))).toBe(true);
    await expect(stat(path.join(dataDir, 'master.key'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('rejects a bad STEWARD_MASTER_KEY instead of falling back to the file', async () => {
    await expect(loadMasterKey('not-a-key', path.join(dir, 'bad-env'))).rejects.toThrow(
      'STEWARD_MASTER_KEY must be 32 bytes',
    );
    await expect(loadMasterKey('a'.repeat(62), path.join(dir, 'bad-env'))).rejects.toThrow(
      'STEWARD_MASTER_KEY',
    );
  });

  it('creates <data dir>/master.key (mode 0600, directory 0700) when absent, then keeps using it', async () => {
    const dataDir = path.join(dir, 'fresh', 'data');
    const first = await loadMasterKey(undefined, dataDir);
    const file = path.join(dataDir, 'master.key');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    const second = await loadMasterKey(undefined, dataDir);
    expect(second.derive('p').equals(first.derive('p'))).toBe(true);
    expect(first.derive('p').equals(master.derive('p'))).toBe(false);
  });

  it('starts racing on a new data directory all get the same key, never a half-written file', async () => {
    for (let round = 0; round < 100; round++) {
      const dataDir = path.join(dir, 'race', String(round));
      const keys = await Promise.all(Array.from({ length: 5 }, () => loadMasterKey(undefined, dataDir)));
      const derived = new Set(keys.map((k) => k.derive('p').toString('hex')));
      expect(derived.size).toBe(1);
      expect(await readdir(dataDir)).toEqual(['master.key']);
    }
  });

  it('refuses a key file that holds no valid key', async () => {
    const dataDir = path.join(dir, 'corrupt');
    await loadMasterKey(undefined, dataDir);
    await writeFile(path.join(dataDir, 'master.key'), 'garbage\n');
    await expect(loadMasterKey(undefined, dataDir)).rejects.toThrow('does not hold a valid master key');
  });
});

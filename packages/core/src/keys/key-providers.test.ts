import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterKey } from '../crypto/master-key.ts';
import { tenantKeyAad } from '../secrets/envelope.ts';
import { AwsKmsProvider } from './aws-kms-provider.ts';
import { isStale, KeyUnwrapError, type KeyProvider } from './key-provider.ts';
import { memoryKeyRing } from './key-ring-store.ts';
import { LocalKeyProvider } from './local-key-provider.ts';
import { Pkcs11Provider } from './pkcs11-provider.ts';
import { startKmsServer, type KmsServer } from './testing/kms-server.ts';
import { startVaultTransitServer, type VaultTransitServer } from './testing/vault-transit-server.ts';
import { VaultTransitProvider } from './vault-transit-provider.ts';

const TENANT_A = '11111111-1111-4111-8111-111111111111';
const TENANT_B = '22222222-2222-4222-8222-222222222222';

/** The contract every provider meets: round trip, tenant binding, rotation keeps old versions readable. */
function providerContract(make: () => KeyProvider) {
  it('round-trips a data key and binds it to its tenant', async () => {
    const p = make();
    const key = randomBytes(32);
    const wrapped = await p.wrap(key, tenantKeyAad(TENANT_A));
    expect(wrapped.ciphertext.includes(key)).toBe(false);
    expect((await p.unwrap(wrapped, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    await expect(p.unwrap(wrapped, tenantKeyAad(TENANT_B))).rejects.toBeInstanceOf(KeyUnwrapError);
    const tampered = { ...wrapped, ciphertext: Buffer.from(wrapped.ciphertext) };
    tampered.ciphertext[tampered.ciphertext.length - 3]! ^= 0x01;
    await expect(p.unwrap(tampered, tenantKeyAad(TENANT_A))).rejects.toThrow();
  });

  it('rotates to a new version; keys under the old one still unwrap and re-wrap to the new one', async () => {
    const p = make();
    const key = randomBytes(32);
    const before = await p.wrap(key, tenantKeyAad(TENANT_A));
    const next = await p.rotate();
    expect(next.keyVersion).toBe(before.keyVersion + 1);
    expect(isStale(before, next)).toBe(true);
    expect((await p.unwrap(before, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    const after = p.rewrap
      ? await p.rewrap(before, tenantKeyAad(TENANT_A))
      : await p.wrap(await p.unwrap(before, tenantKeyAad(TENANT_A)), tenantKeyAad(TENANT_A));
    expect(after.keyVersion).toBe(next.keyVersion);
    expect(isStale(after, await p.current())).toBe(false);
    expect((await p.unwrap(after, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    await expect(p.unwrap(after, tenantKeyAad(TENANT_B))).rejects.toBeInstanceOf(KeyUnwrapError);
  });
}

describe('local key provider', () => {
  const master = new MasterKey(randomBytes(32));
  const ring = memoryKeyRing();
  providerContract(() => new LocalKeyProvider(master, ring));

  it('version 1 is the key every existing data key was wrapped with', async () => {
    const p = new LocalKeyProvider(new MasterKey(Buffer.alloc(32, 7)), memoryKeyRing());
    const { seal } = await import('../secrets/envelope.ts');
    const legacy = seal(
      new MasterKey(Buffer.alloc(32, 7)).derive('tenant-kek'),
      Buffer.alloc(32, 9),
      tenantKeyAad(TENANT_A),
    );
    const key = await p.unwrap(
      {
        provider: 'local',
        keyId: 'tenant-kek',
        keyVersion: 1,
        ciphertext: legacy.ciphertext,
        nonce: legacy.nonce,
      },
      tenantKeyAad(TENANT_A),
    );
    expect(key.equals(Buffer.alloc(32, 9))).toBe(true);
  });

  it('another process sees a rotation through the shared key ring', async () => {
    const shared = memoryKeyRing();
    const a = new LocalKeyProvider(master, shared);
    const b = new LocalKeyProvider(master, shared);
    expect((await b.current()).keyVersion).toBe(1);
    await a.rotate();
    const wrapped = await a.wrap(Buffer.alloc(32, 1), tenantKeyAad(TENANT_A));
    expect(wrapped.keyVersion).toBe(2);
    expect((await b.unwrap(wrapped, tenantKeyAad(TENANT_A))).equals(Buffer.alloc(32, 1))).toBe(true);
  });
});

describe('Vault / OpenBao transit key provider (loopback transit server)', () => {
  let vault: VaultTransitServer;
  beforeAll(async () => {
    vault = await startVaultTransitServer({ keys: ['steward', 'other'] });
  });
  afterAll(() => vault.close());
  const make = (token = vault.token, keyName = 'steward') =>
    new VaultTransitProvider({ address: vault.url, token, keyName, mount: 'transit' });
  providerContract(() => make());

  it('rotation uses the transit rotate and rewrap endpoints; the plaintext key never crosses for rewrap', async () => {
    const p = make();
    const w = await p.wrap(randomBytes(32), tenantKeyAad(TENANT_A));
    vault.requests.length = 0;
    await p.rotate();
    await p.rewrap(w);
    expect(vault.requests).toEqual([
      'POST /v1/transit/keys/steward/rotate',
      'GET /v1/transit/keys/steward',
      'POST /v1/transit/rewrap/steward',
    ]);
  });

  it('retiring old versions (min_decryption_version) makes keys wrapped under them unreadable', async () => {
    const p = make(vault.token, 'other');
    const old = await p.wrap(randomBytes(32), tenantKeyAad(TENANT_A));
    await p.rotate();
    const fresh = await p.rewrap(old);
    expect(await p.retireOldVersions()).toEqual({ retired: [old.keyVersion] });
    await expect(p.unwrap(old, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(KeyUnwrapError);
    expect(await p.unwrap(fresh, tenantKeyAad(TENANT_A))).toHaveLength(32);
  });

  it('a wrong token fails; ciphertext of another transit key does not unwrap', async () => {
    await expect(make('hvs.wrong').wrap(randomBytes(32), tenantKeyAad(TENANT_A))).rejects.toThrow(/403/);
    const w = await make(vault.token, 'other').wrap(randomBytes(32), tenantKeyAad(TENANT_A));
    await expect(make().unwrap(w, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(KeyUnwrapError);
    const moved = { ...w, keyId: 'transit/steward' };
    await expect(make().unwrap(moved, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(KeyUnwrapError);
  });

  it('never puts the token in an error message', async () => {
    const p = new VaultTransitProvider({
      address: 'http://127.0.0.1:9',
      token: 'hvs.secret-token-canary',
      keyName: 'k',
      mount: 'transit',
    });
    const error = await p.current().catch((e: unknown) => e as Error);
    expect(String((error as Error).message)).not.toContain('secret-token-canary');
    expect(JSON.stringify(p)).not.toContain('secret-token-canary');
  });
});

describe('AWS KMS key provider (loopback KMS JSON protocol server)', () => {
  let kms: KmsServer;
  let keyId: string;
  beforeAll(async () => {
    kms = await startKmsServer();
    keyId = kms.createKey('alias/steward');
  });
  afterAll(() => kms.close());
  const make = (id = 'alias/steward', ring = memoryKeyRing()) =>
    new AwsKmsProvider(
      { keyId: id, region: kms.region, endpoint: kms.url, credentials: kms.credentials },
      ring,
    );
  providerContract(() => make());

  it('uses Encrypt, Decrypt and ReEncrypt with the tenant as encryption context', async () => {
    const p = make();
    kms.calls.length = 0;
    const w = await p.wrap(randomBytes(32), tenantKeyAad(TENANT_A));
    await p.unwrap(w, tenantKeyAad(TENANT_A));
    await p.rotate();
    await p.rewrap(w, tenantKeyAad(TENANT_A));
    expect(kms.calls).toEqual(['Encrypt', 'Decrypt', 'ReEncrypt']);
  });

  it("moves data keys to a new KMS key and survives the old key's backing-key rotation", async () => {
    const ring = memoryKeyRing();
    const old = make(keyId, ring);
    const key = randomBytes(32);
    const w = await old.wrap(key, tenantKeyAad(TENANT_A));
    kms.rotateKey(keyId);
    const newKey = kms.createKey();
    const moved = make(newKey, ring);
    expect(isStale(w, await moved.current())).toBe(true);
    const w2 = await moved.rewrap(w, tenantKeyAad(TENANT_A));
    expect(w2.keyId).toBe(newKey);
    kms.disableKey(keyId);
    expect((await moved.unwrap(w2, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    await expect(moved.unwrap(w, tenantKeyAad(TENANT_A))).rejects.toThrow();
  });
});

const SOFTHSM_LIBS = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'];
const softhsmLib = SOFTHSM_LIBS.find((l) => existsSync(l));
const softhsmUtil = (() => {
  try {
    execFileSync('softhsm2-util', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();
const hasSoftHsm = !!softhsmLib && softhsmUtil;
if (!hasSoftHsm) console.warn('PKCS#11 provider tests skipped: install softhsm2 (apt-get install softhsm2)');

describe.skipIf(!hasSoftHsm)('PKCS#11 key provider (SoftHSM2)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'steward-softhsm-'));
  const settings = {
    library: softhsmLib!,
    tokenLabel: 'steward-test',
    pin: '246810',
    keyLabel: 'steward-kek',
  };
  const providers: Pkcs11Provider[] = [];
  beforeAll(() => {
    mkdirSync(path.join(dir, 'tokens'));
    writeFileSync(
      path.join(dir, 'softhsm2.conf'),
      `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`,
    );
    process.env.SOFTHSM2_CONF = path.join(dir, 'softhsm2.conf');
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', 'steward-test', '--pin', settings.pin, '--so-pin', '13579'],
      {
        env: process.env,
        stdio: 'ignore',
      },
    );
  });
  afterAll(async () => {
    for (const p of providers) await p.close();
    rmSync(dir, { recursive: true, force: true });
  });
  let shared: Pkcs11Provider | undefined;
  providerContract(() => {
    shared ??= new Pkcs11Provider(settings);
    providers.push(shared);
    return shared;
  });

  it('keeps its key objects on the token: a new session finds every version', async () => {
    await shared!.close();
    const again = new Pkcs11Provider(settings);
    providers.push(again);
    expect((await again.current()).keyVersion).toBe(2);
    const w = await again.wrap(Buffer.alloc(32, 3), tenantKeyAad(TENANT_B));
    expect((await again.unwrap(w, tenantKeyAad(TENANT_B))).equals(Buffer.alloc(32, 3))).toBe(true);
  });

  it('retiring destroys the older key objects: keys wrapped under them no longer unwrap', async () => {
    const p = providers.at(-1)!;
    const old = await p.wrap(Buffer.alloc(32, 4), tenantKeyAad(TENANT_A));
    await p.rotate();
    const fresh = await p.wrap(Buffer.alloc(32, 5), tenantKeyAad(TENANT_A));
    const r = await p.retireOldVersions();
    expect(r.retired).toContain(old.keyVersion);
    await expect(p.unwrap(old, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(KeyUnwrapError);
    expect((await p.unwrap(fresh, tenantKeyAad(TENANT_A))).equals(Buffer.alloc(32, 5))).toBe(true);
  });

  it('a wrong PIN fails', async () => {
    await providers.at(-1)!.close();
    const bad = new Pkcs11Provider({ ...settings, pin: '000000' });
    await expect(bad.current()).rejects.toThrow();
  });
});

import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MasterKey } from '../crypto/master-key.ts';
import { tenantKeyAad } from '../secrets/envelope.ts';
import { AwsKmsProvider } from './aws-kms-provider.ts';
import { KeyUnwrapError, type KeyProvider } from './key-provider.ts';
import { KeyProviders } from './key-providers.ts';
import { memoryKeyRing } from './key-ring-store.ts';
import { LocalKeyProvider } from './local-key-provider.ts';
import { Pkcs11Provider } from './pkcs11-provider.ts';
import { FileTenantKeystore } from './tenant-keystore.ts';
import { startKmsServer, type KmsServer } from './testing/kms-server.ts';
import { startVaultTransitServer, type VaultTransitServer } from './testing/vault-transit-server.ts';
import { VaultTransitProvider } from './vault-transit-provider.ts';

const TENANT_A = '11111111-1111-4111-8111-111111111111';
const TENANT_B = '22222222-2222-4222-8222-222222222222';
const master = new MasterKey(randomBytes(32));
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(tmpdir(), 'steward-keystore-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('file tenant keystore', () => {
  it('keeps one sealed key file per tenant, private, that only this master key opens', async () => {
    const dir = tempDir();
    const ks = new FileTenantKeystore(path.join(dir, 'keystore'), master);
    const a = await ks.getOrCreate(TENANT_A);
    expect(a).toHaveLength(32);
    expect((await ks.getOrCreate(TENANT_A)).equals(a)).toBe(true);
    const file = path.join(dir, 'keystore', `${TENANT_A}.key`);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(path.join(dir, 'keystore'))).mode & 0o777).toBe(0o700);
    expect((await readFile(file)).includes(a)).toBe(false);
    const other = new FileTenantKeystore(path.join(dir, 'keystore'), new MasterKey(randomBytes(32)));
    await expect(other.get(TENANT_A)).rejects.toBeInstanceOf(KeyUnwrapError);
    // A file copied to another tenant's name does not open there.
    await writeFile(path.join(dir, 'keystore', `${TENANT_B}.key`), await readFile(file));
    await expect(ks.get(TENANT_B)).rejects.toBeInstanceOf(KeyUnwrapError);
  });

  it('processes creating the same tenant key at once agree on one; no temporary files stay', async () => {
    const dir = path.join(tempDir(), 'keystore');
    const many = await Promise.all(
      Array.from({ length: 8 }, () => new FileTenantKeystore(dir, master).getOrCreate(TENANT_A)),
    );
    for (const k of many) expect(k.equals(many[0]!)).toBe(true);
    expect(await readdir(dir)).toEqual([`${TENANT_A}.key`]);
  });

  it('destroy removes the key for good; an id that is not a uuid is refused', async () => {
    const ks = new FileTenantKeystore(path.join(tempDir(), 'keystore'), master);
    await ks.getOrCreate(TENANT_A);
    expect(await ks.destroy(TENANT_A)).toBe(true);
    expect(await ks.get(TENANT_A)).toBeUndefined();
    expect(await ks.destroy(TENANT_A)).toBe(false);
    await expect(ks.get('../master')).rejects.toThrow(/uuid/);
  });
});

/**
 * With every provider: a data key wrapped with the tenant layer; a copy of the wrapped key (as in a
 * database backup) no longer opens once the tenant's KEK is destroyed, though the provider and its
 * key are intact; another tenant's key still opens.
 */
function shreddingContract(make: () => KeyProvider | Promise<KeyProvider>) {
  it('destroying the tenant KEK shreds every copy of the wrapped data key, the provider intact', async () => {
    const active = await make();
    const providers = new KeyProviders(
      new LocalKeyProvider(master, memoryKeyRing()),
      active.name === 'local' ? undefined : active,
      new FileTenantKeystore(path.join(tempDir(), 'keystore'), master),
    );
    const keyA = randomBytes(32);
    const keyB = randomBytes(32);
    const backupA = await providers.wrapDataKey(TENANT_A, keyA, tenantKeyAad(TENANT_A));
    const backupB = await providers.wrapDataKey(TENANT_B, keyB, tenantKeyAad(TENANT_B));
    expect(backupA.provider).toBe(active.name);
    expect(backupA.tenantKek).toBe('file:v1');
    // The provider alone does not give the data key: its plaintext is the tenant-sealed key.
    const outer = await providers.unwrap(backupA, tenantKeyAad(TENANT_A));
    expect(outer.equals(keyA)).toBe(false);
    expect(outer.includes(keyA)).toBe(false);
    expect((await providers.unwrapCached(TENANT_A, backupA, tenantKeyAad(TENANT_A))).equals(keyA)).toBe(true);

    expect(await providers.destroyTenantKek(TENANT_A)).toBe(true);
    await expect(providers.unwrapCached(TENANT_A, backupA, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(
      KeyUnwrapError,
    );
    expect((await providers.unwrapCached(TENANT_B, backupB, tenantKeyAad(TENANT_B))).equals(keyB)).toBe(true);
    // A wrapped key moved to another tenant does not open either.
    await expect(
      providers.unwrapCached(TENANT_B, { ...backupB, ...backupA }, tenantKeyAad(TENANT_B)),
    ).rejects.toBeInstanceOf(KeyUnwrapError);
  });

  it('adds the tenant layer to a data key wrapped before keystores existed', async () => {
    const active = await make();
    const providers = new KeyProviders(
      new LocalKeyProvider(master, memoryKeyRing()),
      active.name === 'local' ? undefined : active,
      new FileTenantKeystore(path.join(tempDir(), 'keystore'), master),
    );
    const key = randomBytes(32);
    const legacy = { ...(await active.wrap(key, tenantKeyAad(TENANT_A))), tenantKek: null };
    expect((await providers.unwrapCached(TENANT_A, legacy, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    const layered = await providers.addTenantLayer(TENANT_A, legacy, tenantKeyAad(TENANT_A));
    expect(layered.tenantKek).toBe('file:v1');
    providers.forget();
    expect((await providers.unwrapCached(TENANT_A, layered, tenantKeyAad(TENANT_A))).equals(key)).toBe(true);
    await providers.destroyTenantKek(TENANT_A);
    await expect(providers.unwrapCached(TENANT_A, layered, tenantKeyAad(TENANT_A))).rejects.toBeInstanceOf(
      KeyUnwrapError,
    );
  });
}

describe('crypto-shredding with the local provider', () => {
  shreddingContract(() => new LocalKeyProvider(master, memoryKeyRing()));
});

describe('crypto-shredding with Vault / OpenBao transit', () => {
  let vault: VaultTransitServer;
  beforeAll(async () => {
    vault = await startVaultTransitServer({ keys: ['steward'] });
  });
  afterAll(() => vault.close());
  shreddingContract(
    () =>
      new VaultTransitProvider({
        address: vault.url,
        token: vault.token,
        keyName: 'steward',
        mount: 'transit',
      }),
  );
});

describe('crypto-shredding with AWS KMS', () => {
  let kms: KmsServer;
  beforeAll(async () => {
    kms = await startKmsServer();
    kms.createKey('alias/steward');
  });
  afterAll(() => kms.close());
  shreddingContract(
    () =>
      new AwsKmsProvider(
        { keyId: 'alias/steward', region: kms.region, endpoint: kms.url, credentials: kms.credentials },
        memoryKeyRing(),
      ),
  );
});

const SOFTHSM_LIBS = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'];
const softhsmLib = SOFTHSM_LIBS.find((l) => existsSync(l));
if (!softhsmLib)
  console.warn('PKCS#11 crypto-shredding test skipped: install softhsm2 (apt-get install softhsm2)');

describe.skipIf(!softhsmLib)('crypto-shredding with PKCS#11 (SoftHSM2)', () => {
  const settings = { library: softhsmLib!, tokenLabel: 'steward-shred', pin: '246810', keyLabel: 'kek' };
  let provider: Pkcs11Provider | undefined;
  beforeAll(() => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'tokens'));
    writeFileSync(
      path.join(dir, 'softhsm2.conf'),
      `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`,
    );
    process.env.SOFTHSM2_CONF = path.join(dir, 'softhsm2.conf');
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', settings.tokenLabel, '--pin', settings.pin, '--so-pin', '13579'],
      { env: process.env, stdio: 'ignore' },
    );
  });
  afterAll(async () => {
    await provider?.close();
  });
  shreddingContract(() => (provider ??= new Pkcs11Provider(settings)));
});

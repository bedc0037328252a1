import type { MasterKey } from '../crypto/master-key.ts';
import { AwsKmsProvider, type AwsKmsSettings } from './aws-kms-provider.ts';
import type { KeyProviderName } from './key-provider.ts';
import { KeyProviders } from './key-providers.ts';
import type { KeyRingStore } from './key-ring-store.ts';
import { LocalKeyProvider } from './local-key-provider.ts';
import type { TenantKeystore } from './tenant-keystore.ts';
import { Pkcs11Provider, type Pkcs11Settings } from './pkcs11-provider.ts';
import { VaultTransitProvider, type VaultTransitSettings } from './vault-transit-provider.ts';

/** The key provider configuration (validated once in apps/server/src/config.ts). */
export interface KeySettings {
  provider: KeyProviderName;
  vault?: Omit<VaultTransitSettings, 'fetch'> | undefined;
  awsKms?: Omit<AwsKmsSettings, 'credentials'> | undefined;
  pkcs11?: Pkcs11Settings | undefined;
}

export function createKeyProviders(
  settings: KeySettings,
  master: MasterKey,
  ring: KeyRingStore,
  tenantKeys?: TenantKeystore,
): KeyProviders {
  const local = new LocalKeyProvider(master, ring);
  switch (settings.provider) {
    case 'local':
      return new KeyProviders(local, undefined, tenantKeys);
    case 'vault':
      if (!settings.vault) throw new Error('the vault key provider needs its settings');
      return new KeyProviders(local, new VaultTransitProvider(settings.vault), tenantKeys);
    case 'aws-kms':
      if (!settings.awsKms) throw new Error('the aws-kms key provider needs its settings');
      return new KeyProviders(local, new AwsKmsProvider(settings.awsKms, ring), tenantKeys);
    case 'pkcs11':
      if (!settings.pkcs11) throw new Error('the pkcs11 key provider needs its settings');
      return new KeyProviders(local, new Pkcs11Provider(settings.pkcs11), tenantKeys);
  }
}

import type { KMSClient, KMSClientConfig } from '@aws-sdk/client-kms';
import { KeyUnwrapError, type KeyProvider, type KeyRef, type WrappedKey } from './key-provider.ts';
import type { KeyRingStore } from './key-ring-store.ts';

export interface AwsKmsSettings {
  /** Key id, ARN or alias of the KMS key new data keys are wrapped with. */
  keyId: string;
  region: string;
  /** Endpoint override (VPC endpoint, LocalStack, tests). */
  endpoint?: string | undefined;
  /** Credentials: default AWS chain (environment, profile, instance role) unless given. */
  credentials?: KMSClientConfig['credentials'];
}

/**
 * AWS KMS: wrap is Encrypt, unwrap Decrypt, rotation ReEncrypt (the plaintext data key never leaves
 * KMS while re-wrapping). The additional data is the KMS encryption context, which KMS binds to the
 * ciphertext. KMS keeps its own backing-key versions (automatic rotation) hidden inside each
 * ciphertext; Steward counts generations in key_ring so `steward keys rotate` knows which data keys
 * it has re-encrypted — including after STEWARD_KMS_AWS_KEY_ID was pointed at a new KMS key (the old
 * key must stay enabled for Decrypt until the rotation finished).
 */
export class AwsKmsProvider implements KeyProvider {
  readonly name = 'aws-kms' as const;
  readonly #s: AwsKmsSettings;
  /** The AWS SDK loads on first use: most installations never configure KMS. */
  #sdk: Promise<{ kms: typeof import('@aws-sdk/client-kms'); client: KMSClient }> | undefined;
  readonly #ring: KeyRingStore;
  #generation: number | undefined;

  constructor(settings: AwsKmsSettings, ring: KeyRingStore) {
    this.#s = settings;
    this.#ring = ring;
  }

  #kms(): Promise<{ kms: typeof import('@aws-sdk/client-kms'); client: KMSClient }> {
    const s = this.#s;
    this.#sdk ??= import('@aws-sdk/client-kms').then((kms) => ({
      kms,
      client: new kms.KMSClient({
        region: s.region,
        ...(s.endpoint ? { endpoint: s.endpoint } : {}),
        ...(s.credentials ? { credentials: s.credentials } : {}),
        maxAttempts: 3,
      }),
    }));
    return this.#sdk;
  }

  async current(): Promise<KeyRef> {
    if (this.#generation === undefined) {
      const rows = await this.#ring.list('aws-kms');
      this.#generation = Math.max(1, ...rows.map((r) => r.version));
    }
    return { provider: 'aws-kms', keyId: this.#s.keyId, keyVersion: this.#generation };
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<WrappedKey> {
    const ref = await this.current();
    const { kms, client } = await this.#kms();
    const out = await client.send(
      new kms.EncryptCommand({ KeyId: this.#s.keyId, Plaintext: plaintext, EncryptionContext: context(aad) }),
    );
    if (!out.CiphertextBlob) throw new Error('KMS returned no ciphertext');
    return { ...ref, ciphertext: Buffer.from(out.CiphertextBlob), nonce: null };
  }

  async unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    if (wrapped.provider !== 'aws-kms') throw new KeyUnwrapError('not a KMS key');
    const { kms, client } = await this.#kms();
    try {
      const out = await client.send(
        new kms.DecryptCommand({
          CiphertextBlob: wrapped.ciphertext,
          EncryptionContext: context(aad),
          KeyId: wrapped.keyId,
        }),
      );
      if (!out.Plaintext) throw new KeyUnwrapError('KMS returned no plaintext');
      return Buffer.from(out.Plaintext);
    } catch (error) {
      if (error instanceof KeyUnwrapError) throw error;
      const name = (error as { name?: string }).name;
      if (name === 'InvalidCiphertextException' || name === 'IncorrectKeyException') {
        throw new KeyUnwrapError('KMS refused');
      }
      throw error;
    }
  }

  async rewrap(wrapped: WrappedKey, aad: Buffer): Promise<WrappedKey> {
    const ref = await this.current();
    const { kms, client } = await this.#kms();
    const out = await client.send(
      new kms.ReEncryptCommand({
        CiphertextBlob: wrapped.ciphertext,
        SourceKeyId: wrapped.keyId,
        SourceEncryptionContext: context(aad),
        DestinationKeyId: this.#s.keyId,
        DestinationEncryptionContext: context(aad),
      }),
    );
    if (!out.CiphertextBlob) throw new Error('KMS returned no ciphertext');
    return { ...ref, ciphertext: Buffer.from(out.CiphertextBlob), nonce: null };
  }

  async rotate(): Promise<KeyRef> {
    this.#generation = undefined;
    const { keyVersion } = await this.current();
    await this.#ring.add('aws-kms', {
      version: keyVersion + 1,
      keyId: this.#s.keyId,
      material: null,
      nonce: null,
    });
    this.#generation = undefined;
    return this.current();
  }

  async retireOldVersions(): Promise<{ unsupported: string }> {
    return {
      unsupported:
        'KMS keeps the backing keys of a KMS key for as long as the key exists: to retire, point STEWARD_KMS_AWS_KEY_ID at a new KMS key, rotate, then schedule the old key for deletion in KMS',
    };
  }

  async close(): Promise<void> {
    if (this.#sdk) (await this.#sdk).client.destroy();
  }

  toJSON(): string {
    return '[aws kms key provider]';
  }
}

function context(aad: Buffer): Record<string, string> {
  return { 'steward:purpose': 'tenant-data-key', 'steward:aad': aad.toString('utf8') };
}

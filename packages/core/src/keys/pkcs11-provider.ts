import { randomBytes } from 'node:crypto';
import type * as Pkcs11Types from 'pkcs11js';
import { KeyUnwrapError, type KeyProvider, type KeyRef, type WrappedKey } from './key-provider.ts';

export interface Pkcs11Settings {
  /** Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  /** Label of the token holding the keys. */
  tokenLabel: string;
  /** User PIN. */
  pin: string;
  /** Keys are AES-256 secret keys labelled `<keyLabel>-v<version>` (default steward-kek). */
  keyLabel: string;
}

type Pkcs11Module = typeof Pkcs11Types;

/**
 * A PKCS#11 token (an HSM, SoftHSM2, a cloud HSM's PKCS#11 library): the key-encryption key is a
 * non-extractable AES-256 key object; wrapping is AES-256-GCM computed inside the token with the
 * tenant id as additional data. Rotation generates a new key object (`-v<N+1>`); the older ones stay
 * on the token for unwrapping until the rotation has re-wrapped every data key.
 */
export class Pkcs11Provider implements KeyProvider {
  readonly name = 'pkcs11' as const;
  readonly #s: Pkcs11Settings;
  #mod: Pkcs11Module | undefined;
  #p11: Pkcs11Types.PKCS11 | undefined;
  #session: Buffer | undefined;
  #keys = new Map<number, Buffer>();

  constructor(settings: Pkcs11Settings) {
    this.#s = settings;
  }

  async current(): Promise<KeyRef> {
    await this.#open();
    if (this.#keys.size === 0) this.#generate(1);
    return { provider: 'pkcs11', keyId: this.#s.keyLabel, keyVersion: Math.max(...this.#keys.keys()) };
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<WrappedKey> {
    const ref = await this.current();
    const nonce = randomBytes(12);
    const p11 = this.#p11!;
    p11.C_EncryptInit(this.#session!, this.#gcm(nonce, aad), this.#keys.get(ref.keyVersion)!);
    const ciphertext = Buffer.from(
      p11.C_Encrypt(this.#session!, plaintext, Buffer.alloc(plaintext.length + 16)),
    );
    return { ...ref, ciphertext, nonce };
  }

  async unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    if (wrapped.provider !== 'pkcs11' || wrapped.keyId !== this.#s.keyLabel || !wrapped.nonce) {
      throw new KeyUnwrapError('not a PKCS#11 key');
    }
    await this.#open();
    let key = this.#keys.get(wrapped.keyVersion);
    if (!key) {
      this.#findKeys(); // another process rotated
      key = this.#keys.get(wrapped.keyVersion);
    }
    if (!key) throw new KeyUnwrapError(`unknown PKCS#11 key version ${wrapped.keyVersion}`);
    const p11 = this.#p11!;
    try {
      p11.C_DecryptInit(this.#session!, this.#gcm(wrapped.nonce, aad), key);
      return Buffer.from(
        p11.C_Decrypt(this.#session!, wrapped.ciphertext, Buffer.alloc(wrapped.ciphertext.length)),
      );
    } catch {
      throw new KeyUnwrapError('the token refused to decrypt');
    }
  }

  async rotate(): Promise<KeyRef> {
    await this.#open();
    this.#findKeys();
    const next = this.#keys.size ? Math.max(...this.#keys.keys()) + 1 : 1;
    this.#generate(next);
    return this.current();
  }

  async retireOldVersions(): Promise<{ retired: number[] }> {
    await this.#open();
    this.#findKeys();
    const current = Math.max(...this.#keys.keys());
    const retired: number[] = [];
    for (const [version, handle] of [...this.#keys]) {
      if (version >= current) continue;
      this.#p11!.C_DestroyObject(this.#session!, handle);
      this.#keys.delete(version);
      retired.push(version);
    }
    return { retired: retired.sort((a, b) => a - b) };
  }

  async close(): Promise<void> {
    if (!this.#p11) return;
    try {
      if (this.#session) this.#p11.C_CloseSession(this.#session);
      this.#p11.C_Finalize();
    } catch {
      // already finalized
    }
    this.#p11 = undefined;
    this.#session = undefined;
    this.#keys.clear();
  }

  #gcm(iv: Buffer, aad: Buffer): Pkcs11Types.Mechanism {
    const m = this.#mod!;
    return {
      mechanism: m.CKM_AES_GCM,
      parameter: { type: m.CK_PARAMS_AES_GCM, iv, aad, ivBits: 96, tagBits: 128 } as Pkcs11Types.AesGCM,
    };
  }

  async #open(): Promise<void> {
    if (this.#p11) return;
    // An optional dependency (a native addon): a machine without a C++ toolchain installs without it.
    const loaded = (await import('pkcs11js').catch(() => {
      throw new Error(
        'STEWARD_KMS_PROVIDER=pkcs11 needs the pkcs11js module, which did not build here: install g++, make and python3, then run npm ci again',
      );
    })) as unknown as Pkcs11Module & { default?: Pkcs11Module };
    const mod = loaded.default ?? loaded;
    const p11 = new mod.PKCS11();
    p11.load(this.#s.library);
    p11.C_Initialize();
    try {
      const slot = p11
        .C_GetSlotList(true)
        .find((s) => p11.C_GetTokenInfo(s).label.trim() === this.#s.tokenLabel);
      if (!slot) throw new Error(`no PKCS#11 token labelled "${this.#s.tokenLabel}"`);
      const session = p11.C_OpenSession(slot, mod.CKF_SERIAL_SESSION | mod.CKF_RW_SESSION);
      p11.C_Login(session, mod.CKU_USER, this.#s.pin);
      this.#mod = mod;
      this.#p11 = p11;
      this.#session = session;
      this.#findKeys();
    } catch (error) {
      p11.C_Finalize();
      throw error;
    }
  }

  #findKeys(): void {
    const m = this.#mod!;
    const p11 = this.#p11!;
    const session = this.#session!;
    p11.C_FindObjectsInit(session, [{ type: m.CKA_CLASS, value: m.CKO_SECRET_KEY }]);
    const handles = p11.C_FindObjects(session, 1000);
    p11.C_FindObjectsFinal(session);
    const prefix = `${this.#s.keyLabel}-v`;
    for (const h of handles) {
      const [attr] = p11.C_GetAttributeValue(session, h, [{ type: m.CKA_LABEL }]);
      const label = attr?.value ? Buffer.from(attr.value as Buffer).toString('utf8') : '';
      if (!label.startsWith(prefix)) continue;
      const version = Number(label.slice(prefix.length));
      if (Number.isInteger(version) && version >= 1) this.#keys.set(version, h);
    }
  }

  #generate(version: number): void {
    const m = this.#mod!;
    const handle = this.#p11!.C_GenerateKey(this.#session!, { mechanism: m.CKM_AES_KEY_GEN }, [
      { type: m.CKA_CLASS, value: m.CKO_SECRET_KEY },
      { type: m.CKA_KEY_TYPE, value: m.CKK_AES },
      { type: m.CKA_VALUE_LEN, value: 32 },
      { type: m.CKA_LABEL, value: `${this.#s.keyLabel}-v${version}` },
      { type: m.CKA_TOKEN, value: true },
      { type: m.CKA_PRIVATE, value: true },
      { type: m.CKA_SENSITIVE, value: true },
      { type: m.CKA_EXTRACTABLE, value: false },
      { type: m.CKA_ENCRYPT, value: true },
      { type: m.CKA_DECRYPT, value: true },
    ]);
    this.#keys.set(version, handle);
  }

  toJSON(): string {
    return '[pkcs11 key provider]';
  }
}

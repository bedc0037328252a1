import { bindAad, unbindAad } from './aad-binding.ts';
import { KeyUnwrapError, type KeyProvider, type KeyRef, type WrappedKey } from './key-provider.ts';

export interface VaultTransitSettings {
  /** https://vault.example:8200 (Vault or OpenBao). */
  address: string;
  token: string;
  /** Transit key name. */
  keyName: string;
  /** Mount path of the transit engine (default transit). */
  mount: string;
  namespace?: string | undefined;
  fetch?: typeof fetch;
}

/** A request to Vault failed (network or an error status); the message never holds the token. */
export class VaultError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'VaultError';
  }
}

const VERSION_RE = /^vault:v(\d+):/;

/**
 * HashiCorp Vault / OpenBao transit engine: the key-encryption key never leaves Vault. Wrap is
 * `encrypt`, unwrap `decrypt`, rotation `keys/:name/rotate` followed by `rewrap` of every data key
 * (the plaintext data key does not leave Vault during rewrap).
 */
export class VaultTransitProvider implements KeyProvider {
  readonly name = 'vault' as const;
  readonly #s: VaultTransitSettings;
  #latest: number | undefined;

  constructor(settings: VaultTransitSettings) {
    this.#s = { ...settings, address: settings.address.replace(/\/+$/, '') };
  }

  get #keyId(): string {
    return `${this.#s.mount}/${this.#s.keyName}`;
  }

  async current(): Promise<KeyRef> {
    if (this.#latest === undefined) {
      const body = await this.#call('GET', `keys/${enc(this.#s.keyName)}`);
      const latest = Number((body.data as { latest_version?: unknown } | undefined)?.latest_version);
      if (!Number.isInteger(latest) || latest < 1) throw new VaultError('Vault returned no key version');
      this.#latest = latest;
    }
    return { provider: 'vault', keyId: this.#keyId, keyVersion: this.#latest };
  }

  async wrap(plaintext: Buffer, aad: Buffer): Promise<WrappedKey> {
    const body = await this.#call('POST', `encrypt/${enc(this.#s.keyName)}`, {
      plaintext: bindAad(plaintext, aad).toString('base64'),
    });
    return this.#wrapped(body);
  }

  async unwrap(wrapped: WrappedKey, aad: Buffer): Promise<Buffer> {
    if (wrapped.provider !== 'vault' || wrapped.keyId !== this.#keyId)
      throw new KeyUnwrapError('not this Vault key');
    let body: Record<string, unknown>;
    try {
      body = await this.#call('POST', `decrypt/${enc(this.#s.keyName)}`, {
        ciphertext: wrapped.ciphertext.toString('utf8'),
      });
    } catch (error) {
      if (error instanceof VaultError && error.status === 400) throw new KeyUnwrapError('Vault refused');
      throw error;
    }
    const plaintext = (body.data as { plaintext?: unknown } | undefined)?.plaintext;
    if (typeof plaintext !== 'string') throw new KeyUnwrapError('Vault returned no plaintext');
    return unbindAad(Buffer.from(plaintext, 'base64'), aad);
  }

  async rewrap(wrapped: WrappedKey): Promise<WrappedKey> {
    const body = await this.#call('POST', `rewrap/${enc(this.#s.keyName)}`, {
      ciphertext: wrapped.ciphertext.toString('utf8'),
    });
    return this.#wrapped(body);
  }

  async rotate(): Promise<KeyRef> {
    await this.#call('POST', `keys/${enc(this.#s.keyName)}/rotate`, {});
    this.#latest = undefined;
    return this.current();
  }

  async retireOldVersions(): Promise<{ retired: number[] }> {
    this.#latest = undefined;
    const { keyVersion } = await this.current();
    const body = await this.#call('GET', `keys/${enc(this.#s.keyName)}`);
    const min = Number(
      (body.data as { min_decryption_version?: unknown } | undefined)?.min_decryption_version ?? 1,
    );
    await this.#call('POST', `keys/${enc(this.#s.keyName)}/config`, { min_decryption_version: keyVersion });
    const retired: number[] = [];
    for (let v = min; v < keyVersion; v++) retired.push(v);
    return { retired };
  }

  #wrapped(body: Record<string, unknown>): WrappedKey {
    const ciphertext = (body.data as { ciphertext?: unknown } | undefined)?.ciphertext;
    const m = typeof ciphertext === 'string' ? VERSION_RE.exec(ciphertext) : null;
    if (!m || typeof ciphertext !== 'string') throw new VaultError('Vault returned no ciphertext');
    const keyVersion = Number(m[1]);
    if (this.#latest !== undefined && keyVersion > this.#latest) this.#latest = keyVersion;
    return {
      provider: 'vault',
      keyId: this.#keyId,
      keyVersion,
      ciphertext: Buffer.from(ciphertext),
      nonce: null,
    };
  }

  async #call(method: 'GET' | 'POST', op: string, json?: unknown): Promise<Record<string, unknown>> {
    const url = `${this.#s.address}/v1/${this.#s.mount.split('/').map(enc).join('/')}/${op}`;
    const headers: Record<string, string> = { 'X-Vault-Token': this.#s.token, 'X-Vault-Request': 'true' };
    if (this.#s.namespace) headers['X-Vault-Namespace'] = this.#s.namespace;
    if (json !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await (this.#s.fetch ?? fetch)(url, {
        method,
        headers,
        ...(json !== undefined ? { body: JSON.stringify(json) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (error) {
      throw new VaultError(`Vault is unreachable: ${(error as Error).message}`);
    }
    const text = await response.text();
    if (!response.ok)
      throw new VaultError(`Vault answered ${response.status} to ${op.split('/')[0]}`, response.status);
    if (!text) return {};
    try {
      return JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new VaultError('Vault answered with something other than JSON');
    }
  }

  toJSON(): string {
    return '[vault transit key provider]';
  }
}

const enc = encodeURIComponent;

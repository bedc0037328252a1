import { ApiClient, ApiError, NetworkError } from '../api/api-client.ts';
import type { MfaChallenge, TenantInfo, Tokens, UserInfo } from '../api/types.ts';

/**
 * Token storage. The access token (short-lived) lives in memory only. The refresh token must survive
 * a reload and an offline start of the installed app, so it is kept in localStorage: it is
 * single-use (each refresh rotates it and the server revokes a reused one), the page runs under a
 * strict CSP (script-src 'self', no inline script) which is the real defence against the XSS that
 * could read it, and logout and expiry erase it. An HttpOnly cookie would keep it from scripts
 * altogether but needs a cookie-based refresh endpoint (and CSRF defences); see README.
 */
export const STORAGE_KEY = 'steward.session';

export interface StoredSession {
  refreshToken: string;
  user: UserInfo;
  tenant: TenantInfo;
}

export type SessionState =
  | { status: 'starting' }
  | { status: 'signed-out'; message?: string | undefined }
  | { status: 'mfa'; challenge: MfaChallenge; email: string }
  | { status: 'signed-in'; user: UserInfo; tenant: TenantInfo }
  /** Signed in before, no server now: the app shows saved data and queues decisions. */
  | { status: 'offline'; user: UserInfo; tenant: TenantInfo };

export interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Serialises refreshes across tabs (refresh tokens work once); falls back to in-tab only. */
async function withRefreshLock<T>(fn: () => Promise<T>): Promise<T> {
  const locks = (globalThis.navigator as Navigator | undefined)?.locks;
  if (locks) return locks.request('steward-refresh', fn) as Promise<T>;
  return fn();
}

export class Session {
  readonly api: ApiClient;
  private state: SessionState = { status: 'starting' };
  private accessToken: string | undefined;
  private expiresAt = 0;
  private refreshing: Promise<boolean> | undefined;
  private readonly listeners = new Set<() => void>();

  constructor(
    private readonly storage: KeyValueStore,
    opts: { baseUrl?: string; fetch?: typeof fetch; now?: () => number } = {},
  ) {
    this.now = opts.now ?? Date.now;
    this.api = new ApiClient({
      ...(opts.baseUrl !== undefined ? { baseUrl: opts.baseUrl } : {}),
      ...(opts.fetch ? { fetch: opts.fetch } : {}),
      accessToken: () => this.validAccessToken(),
      onUnauthorized: () => this.renew(),
    });
  }

  private readonly now: () => number;

  get current(): SessionState {
    return this.state;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): SessionState => this.state;

  private set(state: SessionState) {
    this.state = state;
    for (const l of [...this.listeners]) l();
  }

  private stored(): StoredSession | undefined {
    try {
      const raw = this.storage.getItem(STORAGE_KEY);
      return raw ? (JSON.parse(raw) as StoredSession) : undefined;
    } catch {
      return undefined;
    }
  }

  private adopt(tokens: Tokens) {
    this.accessToken = tokens.accessToken;
    this.expiresAt = this.now() + tokens.expiresIn * 1000;
    this.storage.setItem(
      STORAGE_KEY,
      JSON.stringify({
        refreshToken: tokens.refreshToken,
        user: tokens.user,
        tenant: tokens.tenant,
      } satisfies StoredSession),
    );
    this.set({ status: 'signed-in', user: tokens.user, tenant: tokens.tenant });
  }

  /** On start: resume a stored session (refreshing it), or sign-in; offline keeps the stored one. */
  async start(): Promise<void> {
    const stored = this.stored();
    if (!stored) return this.set({ status: 'signed-out' });
    await this.renew();
  }

  async signIn(email: string, password: string, tenant?: string): Promise<void> {
    const answer = await this.api.login(email, password, tenant);
    if ('mfaRequired' in answer && answer.mfaRequired) {
      this.set({ status: 'mfa', challenge: answer, email });
      return;
    }
    this.adopt(answer as Tokens);
  }

  async verifyMfa(code: string): Promise<void> {
    if (this.state.status !== 'mfa') throw new Error('no second factor is being asked for');
    try {
      this.adopt(await this.api.verifyMfa(this.state.challenge.mfaToken, code));
    } catch (error) {
      // An expired or spent challenge cannot be retried: start over.
      if (
        error instanceof ApiError &&
        error.status === 401 &&
        /expired|invalid token|mfa token/i.test(error.message)
      ) {
        this.set({ status: 'signed-out', message: 'The sign-in took too long. Please sign in again.' });
      }
      throw error;
    }
  }

  cancelMfa() {
    this.set({ status: 'signed-out' });
  }

  async switchTenant(slug: string): Promise<void> {
    this.adopt(await this.api.switchTenant(slug));
  }

  async signOut(): Promise<void> {
    try {
      if (this.state.status === 'signed-in') await this.api.logout();
    } catch {
      // Signed out locally either way; the server session expires by itself.
    }
    this.end();
  }

  /** The session is over (logout or expiry): forget every token. */
  end(message?: string) {
    this.accessToken = undefined;
    this.expiresAt = 0;
    this.storage.removeItem(STORAGE_KEY);
    this.set({ status: 'signed-out', message });
  }

  private async validAccessToken(): Promise<string | undefined> {
    if (this.accessToken && this.expiresAt - 30_000 > this.now()) return this.accessToken;
    if (!this.stored()) return undefined;
    await this.renew();
    return this.accessToken;
  }

  /** Exchange the refresh token for new tokens (once at a time, across tabs). True when it worked. */
  renew(): Promise<boolean> {
    this.refreshing ??= withRefreshLock(async () => {
      const stored = this.stored();
      if (!stored) {
        if (this.state.status === 'signed-in' || this.state.status === 'offline')
          this.end('Your session ended. Please sign in again.');
        return false;
      }
      try {
        this.adopt(await this.api.refresh(stored.refreshToken));
        return true;
      } catch (error) {
        if (error instanceof NetworkError) {
          this.set({ status: 'offline', user: stored.user, tenant: stored.tenant });
          return false;
        }
        if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
          this.end('Your session expired. Please sign in again.');
          return false;
        }
        throw error;
      }
    }).finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }
}

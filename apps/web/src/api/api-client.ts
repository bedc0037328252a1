import type {
  Approval,
  AuditEntry,
  Me,
  MfaChallenge,
  Page,
  TaskDetail,
  TaskStatus,
  TaskSummary,
  TenantInfo,
  Tokens,
} from './types.ts';

/** An error answer of the API: `{error:{code,message,requestId}}` with its HTTP status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly requestId?: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** The server could not be reached (offline, or the server is down). */
export class NetworkError extends Error {
  constructor(message = 'the server cannot be reached') {
    super(message);
    this.name = 'NetworkError';
  }
}

export interface ApiClientOptions {
  baseUrl?: string;
  /** A valid access token (refreshed as needed), or undefined when signed out. */
  accessToken?: () => Promise<string | undefined>;
  /** Called on a 401 to a signed-in request: true when the session was renewed (retry once). */
  onUnauthorized?: () => Promise<boolean>;
  fetch?: typeof fetch;
}

type Method = 'GET' | 'POST' | 'PATCH' | 'PUT' | 'DELETE';

function query(params: Record<string, string | number | undefined>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A typed client of the Steward API over fetch (the dashboard's; usable from Node as well). */
export class ApiClient {
  private readonly base: string;
  private readonly doFetch: typeof fetch;

  constructor(private readonly opts: ApiClientOptions = {}) {
    this.base = (opts.baseUrl ?? '').replace(/\/$/, '') + '/api/v1';
    this.doFetch = opts.fetch ?? ((...args) => fetch(...args));
  }

  async request<T>(method: Method, path: string, body?: unknown, auth = true, retried = false): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (auth) {
      const token = await this.opts.accessToken?.();
      if (token) headers.authorization = `Bearer ${token}`;
    }
    let response: Response;
    try {
      response = await this.doFetch(this.base + path, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    } catch {
      throw new NetworkError();
    }
    if (response.status === 401 && auth && !retried && this.opts.onUnauthorized) {
      if (await this.opts.onUnauthorized()) return this.request<T>(method, path, body, auth, true);
    }
    if (response.status === 204) return undefined as T;
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) {
      const e = (json as { error?: { code?: string; message?: string; requestId?: string } } | undefined)
        ?.error;
      if (response.status >= 502 && !e) throw new NetworkError(`the server answered ${response.status}`);
      throw new ApiError(
        response.status,
        e?.code ?? 'HTTP_' + response.status,
        e?.message ?? response.statusText,
        e?.requestId,
      );
    }
    return json as T;
  }

  // Sign-in
  login(email: string, password: string, tenant?: string) {
    return this.request<Tokens | MfaChallenge>(
      'POST',
      '/auth/login',
      { email, password, ...(tenant ? { tenant } : {}) },
      false,
    );
  }
  verifyMfa(mfaToken: string, code: string) {
    return this.request<Tokens>('POST', '/auth/mfa', { mfaToken, code }, false);
  }
  refresh(refreshToken: string) {
    return this.request<Tokens>('POST', '/auth/refresh', { refreshToken }, false);
  }
  logout() {
    return this.request<void>('POST', '/auth/logout');
  }
  switchTenant(slug: string) {
    return this.request<Tokens>('POST', '/auth/switch-tenant', { tenant: slug });
  }
  me() {
    return this.request<Me>('GET', '/me');
  }
  myTenants() {
    return this.request<{ items: TenantInfo[] }>('GET', '/me/tenants');
  }

  // Tasks and approvals
  tasks(q: { status?: TaskStatus | undefined; limit?: number; cursor?: string | undefined } = {}) {
    return this.request<Page<TaskSummary>>(
      'GET',
      `/tasks${query({ limit: q.limit ?? 200, status: q.status, cursor: q.cursor })}`,
    );
  }
  task(id: string) {
    return this.request<TaskDetail>('GET', `/tasks/${encodeURIComponent(id)}`);
  }
  cancelTask(id: string) {
    return this.request<TaskDetail>('POST', `/tasks/${encodeURIComponent(id)}/cancel`);
  }
  submitEvent(event: {
    source: string;
    type: string;
    subject?: string;
    body?: string;
    externalId?: string;
    from?: string;
    data?: Record<string, unknown>;
  }) {
    return this.request<{ eventId: string; taskId: string; duplicate: boolean }>('POST', '/events', event);
  }
  approvals(q: { status?: string; taskId?: string; limit?: number } = {}) {
    return this.request<Page<Approval>>(
      'GET',
      `/approvals${query({ limit: q.limit ?? 200, status: q.status, taskId: q.taskId })}`,
    );
  }
  approval(id: string) {
    return this.request<Approval>('GET', `/approvals/${encodeURIComponent(id)}`);
  }
  decide(id: string, decision: 'approve' | 'reject', comment?: string) {
    return this.request<{ approval: Approval; replacedBy?: Approval }>(
      'POST',
      `/approvals/${encodeURIComponent(id)}/decision`,
      {
        decision,
        ...(comment ? { comment } : {}),
      },
    );
  }
  streamTicket() {
    return this.request<{ ticket: string; expiresIn: number }>('POST', '/stream-tickets');
  }

  // Audit
  audit(
    q: {
      limit?: number;
      cursor?: string | undefined;
      action?: string;
      targetId?: string;
      outcome?: string;
    } = {},
  ) {
    return this.request<Page<AuditEntry>>(
      'GET',
      `/audit${query({ limit: q.limit ?? 100, cursor: q.cursor, action: q.action, targetId: q.targetId, outcome: q.outcome })}`,
    );
  }
  verifyAudit() {
    return this.request<Record<string, unknown>>('GET', '/audit/verify');
  }
}

import { useState, type FormEvent } from 'react';
import { ApiError, NetworkError } from '../api/api-client.ts';
import type { Session, SessionState } from '../auth/session.ts';

type Props = { session: Session; state: Extract<SessionState, { status: 'signed-out' | 'mfa' }> };

function describe(error: unknown): string {
  if (error instanceof NetworkError)
    return 'The server cannot be reached. Check your connection and try again.';
  if (error instanceof ApiError) {
    if (error.status === 401) return error.message || 'Email or password is incorrect.';
    if (error.status === 429) return 'Too many attempts. Wait a moment and try again.';
    return error.message;
  }
  return 'Something went wrong. Please try again.';
}

export function SignIn({ session, state }: Props) {
  const [email, setEmail] = useState(state.status === 'mfa' ? state.email : '');
  const [password, setPassword] = useState('');
  const [tenant, setTenant] = useState('');
  const [code, setCode] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (state.status === 'mfa') await session.verifyMfa(code.trim());
      else await session.signIn(email.trim(), password, tenant.trim() || undefined);
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main className="signin">
      <form className="card signin-card" onSubmit={submit} aria-labelledby="signin-title">
        <h1 id="signin-title">
          <img src="/icons/icon-192.png" alt="" width="32" height="32" /> Steward
        </h1>
        {state.status === 'signed-out' && state.message && (
          <p className="notice" role="status">
            {state.message}
          </p>
        )}
        {state.status === 'mfa' ? (
          <>
            <p>
              Enter the code from your authenticator app
              {state.challenge.methods.includes('recovery') ? ' (or a recovery code)' : ''}.
            </p>
            <label>
              Verification code
              <input
                name="code"
                inputMode="numeric"
                autoComplete="one-time-code"
                required
                autoFocus
                value={code}
                onChange={(e) => setCode(e.target.value)}
              />
            </label>
          </>
        ) : (
          <>
            <label>
              Email
              <input
                name="email"
                type="email"
                autoComplete="username"
                required
                value={email}
                onChange={(e) => setEmail(e.target.value)}
              />
            </label>
            <label>
              Password
              <input
                name="password"
                type="password"
                autoComplete="current-password"
                required
                value={password}
                onChange={(e) => setPassword(e.target.value)}
              />
            </label>
            <details>
              <summary>Organisation (if you belong to several)</summary>
              <label>
                Organisation
                <input
                  name="tenant"
                  placeholder="e.g. acme"
                  value={tenant}
                  onChange={(e) => setTenant(e.target.value)}
                />
              </label>
            </details>
          </>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Signing in…' : state.status === 'mfa' ? 'Verify' : 'Sign in'}
        </button>
        {state.status === 'mfa' && (
          <button type="button" className="link" onClick={() => session.cancelMfa()}>
            Use another account
          </button>
        )}
      </form>
    </main>
  );
}

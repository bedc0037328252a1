import { useState, type FormEvent } from 'react';
import { ApiError, NetworkError } from '../api/api-client.ts';
import type { Session, SessionState } from '../auth/session.ts';

type Props = { session: Session; state: SessionState; token: string };

function describe(error: unknown): string {
  if (error instanceof NetworkError) return 'The server cannot be reached. Try again.';
  if (error instanceof ApiError) {
    if (error.status === 404)
      return 'This invitation is not valid: it may have expired, been used or revoked.';
    if (error.status === 429) return 'Too many attempts. Wait a moment and try again.';
    return error.message;
  }
  return 'Something went wrong. Please try again.';
}

const leave = () => window.history.replaceState(null, '', '/');

/**
 * The page of an invitation link. Signed in, the account accepts it and switches to the tenant.
 * Signed out, a new person chooses a password; someone who already has an account signs in first
 * (the server answers both the same way, so the link never tells whether an account exists).
 */
export function AcceptInvite({ session, state, token }: Props) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [email, setEmail] = useState('');
  const [signInPassword, setSignInPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>();
  const [hint, setHint] = useState<string | undefined>();
  const signedIn = state.status === 'signed-in';

  async function run(fn: () => Promise<void>) {
    setBusy(true);
    setError(undefined);
    try {
      await fn();
    } catch (err) {
      setError(describe(err));
    } finally {
      setBusy(false);
    }
  }

  const acceptSignedIn = () =>
    run(async () => {
      const r = await session.api.request<{ tenant: { slug: string } }>('POST', '/invitations/accept', {
        token,
      });
      await session.switchTenant(r.tenant.slug);
      leave();
      window.dispatchEvent(new PopStateEvent('popstate'));
    });

  const createAccount = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      const r = await session.api.request<{ email: string; tenant: { slug: string } }>(
        'POST',
        '/invitations/accept',
        { token, password, ...(name.trim() ? { name: name.trim() } : {}) },
        false,
      );
      try {
        await session.signIn(r.email, password, r.tenant.slug);
        leave();
        window.dispatchEvent(new PopStateEvent('popstate'));
      } catch {
        setEmail(r.email);
        setHint(
          'If you already have a Steward account, sign in with its password below, then accept the invitation.',
        );
      }
    });
  };

  const signIn = (e: FormEvent) => {
    e.preventDefault();
    void run(() => session.signIn(email.trim(), signInPassword));
  };

  return (
    <main className="signin">
      <section className="card signin-card" aria-labelledby="invite-title">
        <h1 id="invite-title">
          <img src="/icons/icon-192.png" alt="" width="32" height="32" /> You are invited to Steward
        </h1>
        {signedIn ? (
          <>
            <p>
              Signed in as <strong>{state.user.email}</strong>. Accepting adds this account to the
              organisation that invited you.
            </p>
            <button type="button" className="primary" disabled={busy} onClick={() => void acceptSignedIn()}>
              Accept the invitation
            </button>
            <button type="button" className="link" onClick={() => void session.signOut()}>
              Use another account
            </button>
          </>
        ) : (
          <>
            <form onSubmit={createAccount} aria-labelledby="new-account-title">
              <h2 id="new-account-title">New to Steward?</h2>
              <label>
                Your name
                <input
                  name="name"
                  autoComplete="name"
                  value={name}
                  onChange={(e) => setName(e.target.value)}
                />
              </label>
              <label>
                Choose a password
                <input
                  name="new-password"
                  type="password"
                  autoComplete="new-password"
                  required
                  minLength={8}
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                />
              </label>
              <button type="submit" className="primary" disabled={busy}>
                Create my account
              </button>
            </form>
            <form onSubmit={signIn} aria-labelledby="have-account-title">
              <h2 id="have-account-title">Already have an account?</h2>
              {hint && (
                <p className="notice" role="status">
                  {hint}
                </p>
              )}
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
                  value={signInPassword}
                  onChange={(e) => setSignInPassword(e.target.value)}
                />
              </label>
              <button type="submit" disabled={busy}>
                Sign in to accept
              </button>
            </form>
          </>
        )}
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <a href="/" onClick={() => leave()}>
          Not now
        </a>
      </section>
    </main>
  );
}

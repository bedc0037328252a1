import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../api/api-client.ts';
import { useDashboard } from './dashboard-context.ts';
import { when } from './format.ts';
import { inviteLink } from './router.ts';

interface Invitation {
  id: string;
  email: string;
  role: string;
  status: string;
  createdAt: string;
  expiresAt: string;
}

const errorText = (e: unknown) =>
  e instanceof ApiError && e.status === 403
    ? 'You do not have the permission for this.'
    : (e as Error).message;

/** Invite people by email with a role: the link is shown once; pending invitations can be revoked. */
export function Invitations() {
  const { api } = useDashboard();
  const [items, setItems] = useState<Invitation[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('approver');
  const [link, setLink] = useState<{ email: string; url: string } | undefined>();
  const [message, setMessage] = useState<string | undefined>();

  const load = useCallback(async () => {
    try {
      setItems((await api.request<{ items: Invitation[] }>('GET', '/invitations')).items);
      setError(undefined);
    } catch (e) {
      setError(errorText(e));
    }
  }, [api]);
  useEffect(() => {
    void load();
  }, [load]);

  async function invite(e: FormEvent) {
    e.preventDefault();
    setMessage(undefined);
    try {
      const r = await api.request<{ token: string; email: string }>('POST', '/invitations', { email, role });
      setLink({ email: r.email, url: inviteLink(window.location.origin, r.token) });
      setEmail('');
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  async function revoke(id: string) {
    try {
      await api.request('DELETE', `/invitations/${id}`);
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }

  return (
    <section aria-labelledby="invitations-title" className="card">
      <h2 id="invitations-title">Invitations</h2>
      {error && <p className="error">{error}</p>}
      {link && (
        <div className="notice" role="status" data-testid="invite-link">
          <p>
            <strong>Send this link to {link.email}: it is shown only once and works for 7 days.</strong>
          </p>
          <code className="secret">{link.url}</code>{' '}
          <button type="button" onClick={() => void navigator.clipboard?.writeText(link.url).catch(() => {})}>
            Copy
          </button>{' '}
          <button type="button" onClick={() => setLink(undefined)}>
            Done
          </button>
        </div>
      )}
      {items && items.length === 0 && <p className="muted">No pending invitation.</p>}
      {items && items.length > 0 && (
        <table className="audit-table" aria-label="Pending invitations">
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Expires</th>
              <th scope="col"></th>
            </tr>
          </thead>
          <tbody>
            {items.map((i) => (
              <tr key={i.id}>
                <td>{i.email}</td>
                <td>{i.role}</td>
                <td>{when(i.expiresAt)}</td>
                <td>
                  <button
                    type="button"
                    className="danger"
                    aria-label={`Revoke the invitation of ${i.email}`}
                    onClick={() => void revoke(i.id)}
                  >
                    Revoke
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="inline-form" onSubmit={invite}>
        <label>
          Email to invite
          <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Invited role
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            {['viewer', 'member', 'approver', 'auditor', 'admin', 'owner'].map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit">Invite</button>
      </form>
      {message && <p role="alert">{message}</p>}
    </section>
  );
}

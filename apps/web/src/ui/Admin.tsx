import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../api/api-client.ts';
import { useDashboard } from './dashboard-context.ts';
import { when } from './format.ts';
import { Integrations } from './Integrations.tsx';
import { Invitations } from './Invitations.tsx';
import { RoleEditor } from './RoleEditor.tsx';
import { TenantSettings } from './TenantSettings.tsx';

interface Member {
  id: string;
  email: string;
  name: string;
  role: string;
  status: string;
  createdAt: string;
}
interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  role: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}
interface Playbook {
  id: string;
  name: string;
  description: string;
  enabled: boolean;
  priority: number;
  when: unknown;
  steps: unknown[];
}

const errorText = (e: unknown) =>
  e instanceof ApiError && e.status === 403
    ? 'You do not have the permission for this.'
    : (e as Error).message;

function useList<T>(path: string) {
  const { api } = useDashboard();
  const [items, setItems] = useState<T[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const load = useCallback(async () => {
    try {
      setItems((await api.request<{ items: T[] }>('GET', path)).items);
      setError(undefined);
    } catch (e) {
      setError(errorText(e));
    }
  }, [api, path]);
  useEffect(() => {
    void load();
  }, [load]);
  return { items, error, load };
}

function Users() {
  const { api } = useDashboard();
  const { items, error, load } = useList<Member>('/users?limit=200');
  const [email, setEmail] = useState('');
  const [role, setRole] = useState('approver');
  const [password, setPassword] = useState('');
  const [message, setMessage] = useState<string | undefined>();
  async function add(e: FormEvent) {
    e.preventDefault();
    try {
      await api.request('POST', '/users', { email, role, ...(password ? { password } : {}) });
      setMessage(`${email} added as ${role}.`);
      setEmail('');
      setPassword('');
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  return (
    <section aria-labelledby="users-title" className="card">
      <h2 id="users-title">Users</h2>
      {error && <p className="error">{error}</p>}
      {items && (
        <table className="audit-table">
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {items.map((u) => (
              <tr key={u.id}>
                <td>{u.email}</td>
                <td>{u.role}</td>
                <td>{u.status}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="inline-form" onSubmit={add}>
        <label>
          Email
          <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            {['viewer', 'member', 'approver', 'auditor', 'admin', 'owner'].map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <label>
          Initial password (new accounts)
          <input
            type="password"
            autoComplete="new-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <button type="submit">Add user</button>
      </form>
      {message && <p role="status">{message}</p>}
    </section>
  );
}

function ApiKeys() {
  const { api } = useDashboard();
  const { items, error, load } = useList<ApiKey>('/api-keys?limit=200');
  const [name, setName] = useState('');
  const [role, setRole] = useState('member');
  const [created, setCreated] = useState<string | undefined>();
  const [message, setMessage] = useState<string | undefined>();
  async function create(e: FormEvent) {
    e.preventDefault();
    try {
      const r = await api.request<{ key: string }>('POST', '/api-keys', { name, role });
      setCreated(r.key);
      setName('');
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  async function revoke(id: string) {
    try {
      await api.request('DELETE', `/api-keys/${id}`);
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  return (
    <section aria-labelledby="keys-title" className="card">
      <h2 id="keys-title">API keys</h2>
      {error && <p className="error">{error}</p>}
      {created && (
        <div className="notice" role="status" data-testid="new-key">
          <p>
            <strong>Copy this key now: it is shown only once.</strong>
          </p>
          <code className="secret">{created}</code>{' '}
          <button type="button" onClick={() => void navigator.clipboard?.writeText(created).catch(() => {})}>
            Copy
          </button>{' '}
          <button type="button" onClick={() => setCreated(undefined)}>
            Done
          </button>
        </div>
      )}
      {items && (
        <table className="audit-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Key</th>
              <th scope="col">Role</th>
              <th scope="col">Last used</th>
              <th scope="col"></th>
            </tr>
          </thead>
          <tbody>
            {items.map((k) => (
              <tr key={k.id}>
                <td>{k.name}</td>
                <td>
                  <code>{k.prefix}…</code>
                </td>
                <td>{k.role}</td>
                <td>{when(k.lastUsedAt)}</td>
                <td>
                  {k.revokedAt ? (
                    'revoked'
                  ) : (
                    <button type="button" className="danger" onClick={() => void revoke(k.id)}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="inline-form" onSubmit={create}>
        <label>
          Key name
          <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <label>
          Role
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            {['viewer', 'member', 'approver', 'admin'].map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit">Create key</button>
      </form>
      {message && <p role="alert">{message}</p>}
    </section>
  );
}

const NEW_PLAYBOOK = {
  name: 'New playbook',
  description: '',
  enabled: true,
  priority: 100,
  when: { subject: { contains: 'example' } },
  steps: [{ key: 'note', tool: 'noop', args: { note: '{{event.subject}}' } }],
};

function Playbooks() {
  const { api } = useDashboard();
  const { items, error, load } = useList<Playbook>('/playbooks?limit=200');
  const [editing, setEditing] = useState<{ id?: string; text: string } | undefined>();
  const [problem, setProblem] = useState<string | undefined>();
  async function save() {
    if (!editing) return;
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(editing.text) as Record<string, unknown>;
    } catch (e) {
      return setProblem(`Not valid JSON: ${(e as Error).message}`);
    }
    for (const k of ['id', 'createdAt', 'updatedAt']) delete body[k];
    try {
      if (editing.id) await api.request('PATCH', `/playbooks/${editing.id}`, body);
      else await api.request('POST', '/playbooks', body);
      setEditing(undefined);
      setProblem(undefined);
      void load();
    } catch (e) {
      setProblem(errorText(e));
    }
  }
  return (
    <section aria-labelledby="playbooks-title" className="card">
      <div className="section-head">
        <h2 id="playbooks-title">Playbooks</h2>
        <button type="button" onClick={() => setEditing({ text: JSON.stringify(NEW_PLAYBOOK, null, 2) })}>
          New playbook
        </button>
      </div>
      {error && <p className="error">{error}</p>}
      {items && items.length === 0 && <p className="muted">No playbook: the planner decides alone.</p>}
      <ul className="task-list">
        {items?.map((p) => (
          <li key={p.id} className="task-row">
            <strong>{p.name}</strong>
            <span className="muted">
              {p.enabled ? 'enabled' : 'disabled'} · priority {p.priority} · {p.steps.length} step(s)
            </span>
            <button
              type="button"
              onClick={() => {
                setProblem(undefined);
                setEditing({
                  id: p.id,
                  text: JSON.stringify(
                    {
                      name: p.name,
                      description: p.description,
                      enabled: p.enabled,
                      priority: p.priority,
                      when: p.when,
                      steps: p.steps,
                    },
                    null,
                    2,
                  ),
                });
              }}
            >
              Edit {p.name}
            </button>
          </li>
        ))}
      </ul>
      {editing && (
        <div className="editor">
          <label>
            Playbook (JSON)
            <textarea
              rows={16}
              spellCheck={false}
              value={editing.text}
              onChange={(e) => setEditing({ ...editing, text: e.target.value })}
            />
          </label>
          {problem && (
            <p className="error" role="alert">
              {problem}
            </p>
          )}
          <button type="button" className="primary" onClick={() => void save()}>
            Save playbook
          </button>{' '}
          <button type="button" onClick={() => setEditing(undefined)}>
            Cancel
          </button>
        </div>
      )}
    </section>
  );
}

export function Admin() {
  return (
    <section aria-labelledby="admin-title">
      <h1 id="admin-title">Administration</h1>
      <Users />
      <Invitations />
      <ApiKeys />
      <Playbooks />
      <RoleEditor />
      <TenantSettings />
      <Integrations />
    </section>
  );
}

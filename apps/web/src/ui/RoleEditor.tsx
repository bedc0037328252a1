import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../api/api-client.ts';
import { useDashboard } from './dashboard-context.ts';

interface Role {
  id: string;
  name: string;
  description: string;
  builtin: boolean;
  permissions: string[];
}
interface Permission {
  name: string;
  description: string;
}

const errorText = (e: unknown) =>
  e instanceof ApiError && e.status === 403
    ? 'You do not have the permission for this.'
    : (e as Error).message;

/** Built-in roles are shown; custom roles are created, edited (permissions, description) and deleted. */
export function RoleEditor() {
  const { api } = useDashboard();
  const [roles, setRoles] = useState<Role[] | undefined>();
  const [perms, setPerms] = useState<Permission[]>([]);
  const [error, setError] = useState<string | undefined>();
  const [editing, setEditing] = useState<{
    id?: string;
    name: string;
    description: string;
    permissions: string[];
  }>();
  const [message, setMessage] = useState<string | undefined>();

  const load = useCallback(async () => {
    try {
      setRoles((await api.request<{ items: Role[] }>('GET', '/roles?limit=200')).items);
      setError(undefined);
    } catch (e) {
      setError(errorText(e));
    }
  }, [api]);
  useEffect(() => {
    void load();
    api.request<{ items: Permission[] }>('GET', '/permissions').then(
      (r) => setPerms(r.items),
      () => {},
    );
  }, [api, load]);

  async function save(e: FormEvent) {
    e.preventDefault();
    if (!editing) return;
    setMessage(undefined);
    try {
      if (editing.id)
        await api.request('PATCH', `/roles/${editing.id}`, {
          description: editing.description,
          permissions: editing.permissions,
        });
      else await api.request('POST', '/roles', editing);
      setMessage(`Role ${editing.name} saved.`);
      setEditing(undefined);
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  async function remove(r: Role) {
    try {
      await api.request('DELETE', `/roles/${r.id}`);
      setMessage(`Role ${r.name} deleted.`);
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }
  const toggle = (p: string, on: boolean) =>
    editing &&
    setEditing({
      ...editing,
      permissions: on ? [...editing.permissions, p] : editing.permissions.filter((x) => x !== p),
    });

  return (
    <section aria-labelledby="roles-title" className="card">
      <div className="section-head">
        <h2 id="roles-title">Roles and permissions</h2>
        <button type="button" onClick={() => setEditing({ name: '', description: '', permissions: [] })}>
          New role
        </button>
      </div>
      {error && <p className="error">{error}</p>}
      <ul className="task-list">
        {roles?.map((r) => (
          <li key={r.id} className="task-row">
            <strong>{r.name}</strong>
            <span className="muted">{r.builtin ? 'built in' : 'custom'}</span>
            <span className="muted">{r.permissions.join(', ') || 'no permission'}</span>
            {!r.builtin && (
              <span>
                <button
                  type="button"
                  onClick={() =>
                    setEditing({
                      id: r.id,
                      name: r.name,
                      description: r.description,
                      permissions: r.permissions,
                    })
                  }
                >
                  Edit role {r.name}
                </button>{' '}
                <button type="button" className="danger" onClick={() => void remove(r)}>
                  Delete role {r.name}
                </button>
              </span>
            )}
          </li>
        ))}
      </ul>
      {editing && (
        <form className="editor" onSubmit={save} aria-label="Role">
          {!editing.id && (
            <label>
              Role name
              <input
                required
                pattern="[a-z][a-z0-9_\-]{0,39}"
                title="lower case letters, digits, - and _"
                value={editing.name}
                onChange={(e) => setEditing({ ...editing, name: e.target.value })}
              />
            </label>
          )}
          <label>
            Description
            <input
              maxLength={500}
              value={editing.description}
              onChange={(e) => setEditing({ ...editing, description: e.target.value })}
            />
          </label>
          <fieldset>
            <legend>Permissions of {editing.name || 'the new role'}</legend>
            {perms.map((p) => (
              <label key={p.name} className="check">
                <input
                  type="checkbox"
                  checked={editing.permissions.includes(p.name)}
                  onChange={(e) => toggle(p.name, e.target.checked)}
                />{' '}
                <code>{p.name}</code> <span className="muted">{p.description}</span>
              </label>
            ))}
          </fieldset>
          <button type="submit" className="primary">
            Save role
          </button>{' '}
          <button type="button" onClick={() => setEditing(undefined)}>
            Cancel
          </button>
        </form>
      )}
      {message && <p role="status">{message}</p>}
    </section>
  );
}

import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { ApiError } from '../api/api-client.ts';
import { useDashboard } from './dashboard-context.ts';

interface Connection {
  id: string;
  kind: string;
  name: string;
  config: Record<string, unknown>;
  isDefault: boolean;
  hasSecret: boolean;
}
interface McpServer {
  id: string;
  name: string;
  transport: string;
  url: string | null;
  enabled: boolean;
  hasSecret: boolean;
  allowedTools: string[];
}

const errorText = (e: unknown) =>
  e instanceof ApiError && e.status === 403
    ? 'You do not have the permission for this.'
    : (e as Error).message;

const tools = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/**
 * Connections and MCP servers. Secrets are write-only: the page only knows whether one is stored,
 * offers a field to set or replace it (empty leaves it as it is) and a box to remove it.
 */
export function Integrations() {
  const { api } = useDashboard();
  const [connections, setConnections] = useState<Connection[] | undefined>();
  const [servers, setServers] = useState<McpServer[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [message, setMessage] = useState<string | undefined>();
  const [editing, setEditing] = useState<
    | {
        type: 'connection';
        id?: string;
        kind: string;
        name: string;
        config: string;
        isDefault: boolean;
        secret: string;
        removeSecret: boolean;
        hasSecret: boolean;
      }
    | {
        type: 'mcp';
        id: string;
        transport: string;
        name: string;
        url: string;
        enabled: boolean;
        allowedTools: string;
        header: string;
        secret: string;
        removeSecret: boolean;
        hasSecret: boolean;
      }
  >();

  const load = useCallback(async () => {
    try {
      setConnections((await api.request<{ items: Connection[] }>('GET', '/connections?limit=200')).items);
      setServers((await api.request<{ items: McpServer[] }>('GET', '/mcp-servers')).items);
      setError(undefined);
    } catch (e) {
      setError(errorText(e));
    }
  }, [api]);
  useEffect(() => {
    void load();
  }, [load]);

  async function save(e: FormEvent) {
    e.preventDefault();
    if (!editing) return;
    setMessage(undefined);
    const secretChange = editing.removeSecret ? { secret: null } : {};
    try {
      if (editing.type === 'connection') {
        let config: Record<string, unknown>;
        try {
          config = JSON.parse(editing.config) as Record<string, unknown>;
        } catch (err) {
          return setMessage(`Settings are not valid JSON: ${(err as Error).message}`);
        }
        const secret = editing.secret ? { secret: editing.secret } : secretChange;
        if (editing.id)
          await api.request('PATCH', `/connections/${editing.id}`, {
            name: editing.name,
            config,
            isDefault: editing.isDefault,
            ...secret,
          });
        else
          await api.request('POST', '/connections', {
            kind: editing.kind,
            name: editing.name,
            config,
            isDefault: editing.isDefault,
            ...(editing.secret ? { secret: editing.secret } : {}),
          });
      } else {
        const secret =
          editing.secret && editing.header ? { secret: { [editing.header]: editing.secret } } : secretChange;
        await api.request('PATCH', `/mcp-servers/${editing.id}`, {
          enabled: editing.enabled,
          allowedTools: tools(editing.allowedTools),
          ...(editing.url ? { url: editing.url } : {}),
          ...secret,
        });
      }
      setMessage(`${editing.name} saved.`);
      setEditing(undefined);
      void load();
    } catch (err) {
      setMessage(errorText(err));
    }
  }

  return (
    <section aria-labelledby="integrations-title" className="card">
      <div className="section-head">
        <h2 id="integrations-title">Connections and MCP servers</h2>
        <button
          type="button"
          onClick={() =>
            setEditing({
              type: 'connection',
              kind: 'http',
              name: '',
              config: '{\n  "baseUrl": "https://api.example.com/"\n}',
              isDefault: false,
              secret: '',
              removeSecret: false,
              hasSecret: false,
            })
          }
        >
          New connection
        </button>
      </div>
      {error && <p className="error">{error}</p>}
      {connections?.length === 0 && <p className="muted">No connection.</p>}
      <ul className="task-list">
        {connections?.map((c) => (
          <li key={c.id} className="task-row">
            <strong>{c.name}</strong>
            <span className="muted">
              {c.kind}
              {c.isDefault ? ' · default' : ''} · {c.hasSecret ? 'secret stored' : 'no secret'}
            </span>
            <button
              type="button"
              onClick={() =>
                setEditing({
                  type: 'connection',
                  id: c.id,
                  kind: c.kind,
                  name: c.name,
                  config: JSON.stringify(c.config, null, 2),
                  isDefault: c.isDefault,
                  secret: '',
                  removeSecret: false,
                  hasSecret: c.hasSecret,
                })
              }
            >
              Edit {c.name}
            </button>
          </li>
        ))}
        {servers?.map((m) => (
          <li key={m.id} className="task-row">
            <strong>{m.name}</strong>
            <span className="muted">
              MCP {m.transport}
              {m.url ? ` · ${m.url}` : ''} · {m.enabled ? 'enabled' : 'disabled'} ·{' '}
              {m.allowedTools.length ? `tools: ${m.allowedTools.join(', ')}` : 'no tool allowed'} ·{' '}
              {m.hasSecret ? 'secret stored' : 'no secret'}
            </span>
            <button
              type="button"
              onClick={() =>
                setEditing({
                  type: 'mcp',
                  id: m.id,
                  transport: m.transport,
                  name: m.name,
                  url: m.transport === 'http' ? (m.url ?? '') : '',
                  enabled: m.enabled,
                  allowedTools: m.allowedTools.join(', '),
                  header: 'authorization',
                  secret: '',
                  removeSecret: false,
                  hasSecret: m.hasSecret,
                })
              }
            >
              Edit {m.name}
            </button>
          </li>
        ))}
      </ul>
      {editing && (
        <form className="editor" onSubmit={save} aria-label={`Edit ${editing.name || 'connection'}`}>
          {editing.type === 'connection' ? (
            <>
              {!editing.id && (
                <label>
                  Kind
                  <select
                    value={editing.kind}
                    onChange={(e) => setEditing({ ...editing, kind: e.target.value })}
                  >
                    <option value="http">HTTP API</option>
                    <option value="smtp">SMTP server</option>
                    <option value="imap">IMAP mailbox</option>
                  </select>
                </label>
              )}
              <label>
                Connection name
                <input
                  required
                  maxLength={100}
                  value={editing.name}
                  onChange={(e) => setEditing({ ...editing, name: e.target.value })}
                />
              </label>
              <label>
                Settings (JSON, no secret)
                <textarea
                  rows={6}
                  spellCheck={false}
                  value={editing.config}
                  onChange={(e) => setEditing({ ...editing, config: e.target.value })}
                />
              </label>
              <label className="check">
                <input
                  type="checkbox"
                  checked={editing.isDefault}
                  onChange={(e) => setEditing({ ...editing, isDefault: e.target.checked })}
                />{' '}
                Default connection of its kind
              </label>
            </>
          ) : (
            <>
              {editing.transport === 'http' && (
                <label>
                  Endpoint URL
                  <input
                    value={editing.url}
                    onChange={(e) => setEditing({ ...editing, url: e.target.value })}
                  />
                </label>
              )}
              <label className="check">
                <input
                  type="checkbox"
                  checked={editing.enabled}
                  onChange={(e) => setEditing({ ...editing, enabled: e.target.checked })}
                />{' '}
                Enabled
              </label>
              <label>
                Allowed tools (comma-separated)
                <input
                  value={editing.allowedTools}
                  onChange={(e) => setEditing({ ...editing, allowedTools: e.target.value })}
                />
              </label>
              <label>
                Secret header or variable name
                <input
                  value={editing.header}
                  onChange={(e) => setEditing({ ...editing, header: e.target.value })}
                />
              </label>
            </>
          )}
          <label>
            {editing.hasSecret ? 'Replace the secret (leave empty to keep it)' : 'Set a secret'}
            <input
              type="password"
              autoComplete="off"
              value={editing.secret}
              onChange={(e) => setEditing({ ...editing, secret: e.target.value })}
            />
          </label>
          {editing.hasSecret && (
            <label className="check">
              <input
                type="checkbox"
                checked={editing.removeSecret}
                onChange={(e) => setEditing({ ...editing, removeSecret: e.target.checked })}
              />{' '}
              Remove the stored secret
            </label>
          )}
          <button type="submit" className="primary">
            Save {editing.type === 'mcp' ? 'MCP server' : 'connection'}
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

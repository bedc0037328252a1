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
interface McpTool {
  name: string;
  stewardName: string;
  description: string | null;
  allowed: boolean;
  risk: string;
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
        id?: string;
        transport: string;
        name: string;
        url: string;
        enabled: boolean;
        allowedTools: string;
        /** stdio servers being created: the program and its arguments, separated by spaces. */
        command: string;
        header: string;
        secret: string;
        removeSecret: boolean;
        hasSecret: boolean;
      }
  >();
  /** The tools of one MCP server, as it lists them now (loading, or why it could not). */
  const [toolsOf, setToolsOf] = useState<
    { server: McpServer; tools?: McpTool[]; error?: string; allowed: Set<string> } | undefined
  >();

  async function showTools(server: McpServer) {
    setToolsOf({ server, allowed: new Set(server.allowedTools) });
    try {
      const r = await api.request<{ items: McpTool[] }>('GET', `/mcp-servers/${server.id}/tools`);
      setToolsOf({ server, tools: r.items, allowed: new Set(server.allowedTools) });
    } catch (e) {
      setToolsOf({ server, error: errorText(e), allowed: new Set(server.allowedTools) });
    }
  }

  async function saveAllowed() {
    if (!toolsOf) return;
    try {
      await api.request('PATCH', `/mcp-servers/${toolsOf.server.id}`, {
        allowedTools: [...toolsOf.allowed].sort(),
      });
      setMessage(`Allowed tools of ${toolsOf.server.name} saved.`);
      setToolsOf(undefined);
      void load();
    } catch (e) {
      setMessage(errorText(e));
    }
  }

  async function remove(kind: 'connection' | 'mcp', id: string, name: string) {
    if (!window.confirm(`Delete ${name}? Tools that use it will stop working.`)) return;
    setMessage(undefined);
    try {
      await api.request('DELETE', kind === 'mcp' ? `/mcp-servers/${id}` : `/connections/${id}`);
      setMessage(`${name} deleted.`);
      if (editing?.id === id) setEditing(undefined);
      if (toolsOf?.server.id === id) setToolsOf(undefined);
      void load();
    } catch (e) {
      setMessage(errorText(e));
    }
  }

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
        if (editing.id)
          await api.request('PATCH', `/mcp-servers/${editing.id}`, {
            enabled: editing.enabled,
            allowedTools: tools(editing.allowedTools),
            ...(editing.url ? { url: editing.url } : {}),
            ...secret,
          });
        else
          await api.request('POST', '/mcp-servers', {
            name: editing.name,
            transport: editing.transport,
            ...(editing.transport === 'http'
              ? { url: editing.url }
              : { command: editing.command.split(/\s+/).filter(Boolean) }),
            enabled: editing.enabled,
            allowedTools: tools(editing.allowedTools),
            ...(editing.secret && editing.header ? { secret: { [editing.header]: editing.secret } } : {}),
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
        <div>
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
          </button>{' '}
          <button
            type="button"
            onClick={() =>
              setEditing({
                type: 'mcp',
                transport: 'http',
                name: '',
                url: 'https://',
                enabled: true,
                allowedTools: '',
                command: '',
                header: 'authorization',
                secret: '',
                removeSecret: false,
                hasSecret: false,
              })
            }
          >
            New MCP server
          </button>
        </div>
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
            <button type="button" className="danger" onClick={() => void remove('connection', c.id, c.name)}>
              Delete {c.name}
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
                  command: '',
                  header: 'authorization',
                  secret: '',
                  removeSecret: false,
                  hasSecret: m.hasSecret,
                })
              }
            >
              Edit {m.name}
            </button>
            <button type="button" onClick={() => void showTools(m)}>
              Tools of {m.name}
            </button>
            <button type="button" className="danger" onClick={() => void remove('mcp', m.id, m.name)}>
              Delete {m.name}
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
              {!editing.id && (
                <>
                  <label>
                    MCP server name
                    <input
                      required
                      pattern="[a-z0-9][a-z0-9_\-]{0,39}"
                      title="lower-case letters, digits, - and _ (tools are named mcp.<name>.<tool>)"
                      value={editing.name}
                      onChange={(e) => setEditing({ ...editing, name: e.target.value })}
                    />
                  </label>
                  <label>
                    Transport
                    <select
                      value={editing.transport}
                      onChange={(e) => setEditing({ ...editing, transport: e.target.value })}
                    >
                      <option value="http">Streamable HTTP</option>
                      <option value="stdio">Program on the Steward host (stdio)</option>
                    </select>
                  </label>
                  {editing.transport === 'stdio' && (
                    <label>
                      Command (program and arguments)
                      <input
                        required
                        value={editing.command}
                        onChange={(e) => setEditing({ ...editing, command: e.target.value })}
                      />
                    </label>
                  )}
                </>
              )}
              {editing.transport === 'http' && (
                <label>
                  Endpoint URL
                  <input
                    type="url"
                    required
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
      {toolsOf && (
        <section className="editor" aria-labelledby="mcp-tools-title">
          <h3 id="mcp-tools-title">Tools of {toolsOf.server.name}</h3>
          {toolsOf.error ? (
            <p className="error" role="alert">
              Could not list the tools: {toolsOf.error}
            </p>
          ) : !toolsOf.tools ? (
            <p className="muted">Asking the server…</p>
          ) : toolsOf.tools.length === 0 ? (
            <p className="muted">The server offers no tool.</p>
          ) : (
            <>
              <ul className="task-list" data-testid="mcp-tools">
                {toolsOf.tools.map((tool) => (
                  <li key={tool.name} className="task-row">
                    <label className="check">
                      <input
                        type="checkbox"
                        checked={toolsOf.allowed.has(tool.name)}
                        onChange={(e) => {
                          const allowed = new Set(toolsOf.allowed);
                          if (e.target.checked) allowed.add(tool.name);
                          else allowed.delete(tool.name);
                          setToolsOf({ ...toolsOf, allowed });
                        }}
                      />{' '}
                      Allow {tool.name}
                    </label>
                    <span className="muted">
                      <code>{tool.stewardName}</code> · risk {tool.risk}
                      {tool.description ? ` · ${tool.description}` : ''}
                    </span>
                  </li>
                ))}
              </ul>
              <button type="button" className="primary" onClick={() => void saveAllowed()}>
                Save allowed tools
              </button>{' '}
            </>
          )}
          <button type="button" onClick={() => setToolsOf(undefined)}>
            Close
          </button>
        </section>
      )}
      {message && <p role="status">{message}</p>}
    </section>
  );
}

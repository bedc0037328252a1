import { useEffect, useState } from 'react';
import type { AuditEntry } from '../api/types.ts';
import { useDashboard } from './dashboard-context.ts';
import { when } from './format.ts';
import { describeHealth, type HealthLine, type HealthReport } from '../state/describe-health.ts';

const LIVE_TEXT = {
  connecting: 'connecting',
  live: 'connected',
  reconnecting: 'reconnecting',
  offline: 'offline',
};

/** Health (server, database, live stream) and the latest audit entries, refreshed on live changes. */
export function ActivityPanel() {
  const { api, live, offline, onChange, tasks } = useDashboard();
  // The task board loads first: the panel asks the server only once the tasks are in.
  const boardReady = tasks.loaded;
  const [ready, setReady] = useState<{ ok: boolean; detail: string } | undefined>();
  const [recent, setRecent] = useState<AuditEntry[] | 'forbidden' | undefined>();
  const [background, setBackground] = useState<HealthLine[] | undefined>();

  useEffect(() => {
    if (offline || !boardReady) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      fetch('/readyz').then(
        async (r) => {
          const body = (await r.json().catch(() => ({}))) as {
            ok?: boolean;
            reason?: string;
            schemaVersion?: number;
          };
          setReady({
            ok: !!body.ok,
            detail: body.ok ? `schema ${body.schemaVersion}` : (body.reason ?? `HTTP ${r.status}`),
          });
        },
        () => setReady({ ok: false, detail: 'unreachable' }),
      );
      api.request<HealthReport>('GET', '/health').then(
        (h) => setBackground(describeHealth(h)),
        () => setBackground(undefined),
      );
      api.audit({ limit: 8 }).then(
        (p) => setRecent(p.items),
        () => setRecent('forbidden'),
      );
    };
    load();
    const off = onChange(() => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(load, 500);
    });
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  }, [api, offline, onChange, boardReady]);

  return (
    <aside className="activity" aria-label="Health and recent activity">
      <section className="card">
        <h2>Health</h2>
        <ul className="health">
          <li>
            <span className={`dot ${ready?.ok ? 'ok' : ready ? 'bad' : ''}`} aria-hidden="true" /> Server and
            database:{' '}
            {offline
              ? 'offline'
              : ready
                ? ready.ok
                  ? `ready (${ready.detail})`
                  : `not ready: ${ready.detail}`
                : '…'}
          </li>
          <li>
            <span className={`dot ${live === 'live' ? 'ok' : 'bad'}`} aria-hidden="true" /> Live updates:{' '}
            {LIVE_TEXT[live]}
          </li>
          {!offline &&
            background
              ?.filter((l) => !l.key.startsWith('c:'))
              .map((l) => (
                <li key={l.key} data-testid="health-line">
                  <span
                    className={`dot ${l.ok === true ? 'ok' : l.ok === false ? 'bad' : ''}`}
                    aria-hidden="true"
                  />{' '}
                  {l.text}
                </li>
              ))}
        </ul>
      </section>
      {!offline && background && (
        <section className="card" aria-labelledby="connections-health-title">
          <h2 id="connections-health-title">Connections</h2>
          {background.some((l) => l.key.startsWith('c:')) ? (
            <ul className="health" data-testid="connection-health">
              {background
                .filter((l) => l.key.startsWith('c:'))
                .map((l) => (
                  <li key={l.key} data-testid="connection-line" data-state={l.state}>
                    <span className={`state-tag ${l.ok === true ? 'ok' : l.ok === false ? 'bad' : ''}`}>
                      {l.state}
                    </span>{' '}
                    {l.text}
                    {l.detail && <div className="muted health-detail">{l.detail}</div>}
                  </li>
                ))}
            </ul>
          ) : (
            <p className="muted">No connections or MCP servers yet.</p>
          )}
        </section>
      )}
      {recent !== 'forbidden' && (
        <section className="card">
          <h2>Recent activity</h2>
          {!recent ? (
            <p className="muted">{offline ? 'Not available offline.' : 'Loading…'}</p>
          ) : recent.length === 0 ? (
            <p className="muted">Nothing yet.</p>
          ) : (
            <ul className="audit">
              {recent.map((e, i) => (
                <li key={e.seq ?? i}>
                  <code>{e.action}</code>{' '}
                  <span className="muted">
                    {e.actorLabel ?? ''} · {when(e.at)}
                  </span>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </aside>
  );
}

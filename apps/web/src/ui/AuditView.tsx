import { useCallback, useEffect, useState } from 'react';
import { ApiError } from '../api/api-client.ts';
import type { AuditEntry } from '../api/types.ts';
import { useDashboard } from './dashboard-context.ts';
import { json, when } from './format.ts';

export function AuditView() {
  const { api } = useDashboard();
  const [action, setAction] = useState('');
  const [outcome, setOutcome] = useState('');
  const [items, setItems] = useState<AuditEntry[] | undefined>();
  const [error, setError] = useState<string | undefined>();
  const [verify, setVerify] = useState<string | undefined>();

  const load = useCallback(async () => {
    try {
      setItems(
        (await api.audit({ limit: 100, ...(action ? { action } : {}), ...(outcome ? { outcome } : {}) }))
          .items,
      );
      setError(undefined);
    } catch (e) {
      setError(
        e instanceof ApiError && e.status === 403
          ? 'You do not have the audit:read permission.'
          : (e as Error).message,
      );
    }
  }, [api, action, outcome]);

  useEffect(() => {
    void load();
  }, [load]);

  /** Every entry matching the filter (all pages), as a JSON file. */
  async function exportAll() {
    const all: AuditEntry[] = [];
    let cursor: string | undefined;
    do {
      const page = await api.audit({
        limit: 200,
        cursor,
        ...(action ? { action } : {}),
        ...(outcome ? { outcome } : {}),
      });
      all.push(...page.items);
      cursor = page.nextCursor ?? undefined;
    } while (cursor && all.length < 100_000);
    const url = URL.createObjectURL(new Blob([JSON.stringify(all, null, 2)], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `audit-${new Date().toISOString().slice(0, 19)}.json`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async function runVerify() {
    setVerify('Checking…');
    try {
      const r = (await api.verifyAudit()) as {
        ok: boolean;
        checked: number;
        reason?: string;
        firstBrokenSeq?: number;
      };
      setVerify(
        r.ok
          ? `Intact: ${r.checked} entries checked.`
          : `BROKEN at entry ${r.firstBrokenSeq}: ${r.reason ?? ''}`,
      );
    } catch (e) {
      setVerify((e as Error).message);
    }
  }

  return (
    <section aria-labelledby="audit-title">
      <div className="section-head">
        <h1 id="audit-title">Audit log</h1>
        <div className="segmented">
          <button type="button" onClick={() => void exportAll().catch((e: Error) => setError(e.message))}>
            Export
          </button>
          <button type="button" onClick={() => void runVerify()}>
            Verify integrity
          </button>
        </div>
      </div>
      {verify && (
        <p className="message ok" role="status">
          {verify}
        </p>
      )}
      <div className="filters">
        <label>
          <span className="visually-hidden">Action</span>
          <input
            placeholder="Action, e.g. approval.* "
            value={action}
            onChange={(e) => setAction(e.target.value.trim())}
          />
        </label>
        <label>
          <span className="visually-hidden">Outcome</span>
          <select value={outcome} onChange={(e) => setOutcome(e.target.value)}>
            <option value="">Any outcome</option>
            <option value="success">Success</option>
            <option value="failure">Failure</option>
            <option value="denied">Denied</option>
          </select>
        </label>
      </div>
      {error ? (
        <p className="error" role="alert">
          {error}
        </p>
      ) : !items ? (
        <p aria-busy="true">Loading…</p>
      ) : items.length === 0 ? (
        <p className="empty">No entries.</p>
      ) : (
        <table className="audit-table">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Who</th>
              <th scope="col">Action</th>
              <th scope="col">Outcome</th>
              <th scope="col">Details</th>
            </tr>
          </thead>
          <tbody>
            {items.map((e, i) => (
              <tr key={e.seq ?? i}>
                <td>{when(e.at)}</td>
                <td>{e.actorLabel ?? '—'}</td>
                <td>
                  <code>{e.action}</code>
                </td>
                <td>{e.outcome}</td>
                <td>
                  <details>
                    <summary>show</summary>
                    <pre>{json(e.details)}</pre>
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

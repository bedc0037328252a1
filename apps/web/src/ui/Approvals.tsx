import { useState } from 'react';
import { ApprovalCard } from './ApprovalCard.tsx';
import { useDashboard } from './dashboard-context.ts';
import { PushToggle } from './PushToggle.tsx';

export function Approvals() {
  const { approvals, approvalsLoaded, decide, queued, decidedHere } = useDashboard();
  const pending = approvals.filter((a) => a.status === 'pending');
  // Decided from this page: kept in place, with the outcome, until the page is left.
  const shown = [...pending];
  for (const a of Object.values(decidedHere)) if (!pending.some((p) => p.id === a.id)) shown.push(a);
  shown.sort((x, y) => (x.createdAt < y.createdAt ? 1 : -1));
  const [selected, setSelected] = useState<Set<string>>(new Set());
  const [busy, setBusy] = useState(false);
  const [report, setReport] = useState<string | undefined>();
  const chosen = pending.filter((a) => selected.has(a.id) && !queued.some((q) => q.approvalId === a.id));

  async function bulk(decision: 'approve' | 'reject') {
    setBusy(true);
    setReport(undefined);
    let done = 0;
    let queuedN = 0;
    const conflicts: string[] = [];
    const failed: string[] = [];
    for (const a of chosen) {
      try {
        const r = await decide(a, decision);
        if (r.result === 'decided') done++;
        else if (r.result === 'queued') queuedN++;
        else conflicts.push(r.message);
      } catch (error) {
        failed.push((error as Error).message);
      }
    }
    setSelected(new Set());
    setBusy(false);
    const parts = [`${done} ${decision === 'approve' ? 'approved' : 'rejected'}`];
    if (queuedN) parts.push(`${queuedN} queued until you are online`);
    if (conflicts.length) parts.push(`${conflicts.length} already decided by someone else`);
    if (failed.length) parts.push(`${failed.length} failed (${failed.join('; ')})`);
    setReport(parts.join(', ') + '.');
  }

  return (
    <section aria-labelledby="approvals-title">
      <div className="section-head">
        <h1 id="approvals-title">Approvals</h1>
        <PushToggle />
        {pending.length > 1 && (
          <label className="select-all">
            <input
              type="checkbox"
              checked={chosen.length > 0 && chosen.length === pending.length}
              onChange={(e) => setSelected(e.target.checked ? new Set(pending.map((a) => a.id)) : new Set())}
            />{' '}
            Select all
          </label>
        )}
      </div>
      {chosen.length > 0 && (
        <div className="bulk-bar" role="region" aria-label="Bulk decision">
          <span>{chosen.length} selected</span>
          <button type="button" className="primary" disabled={busy} onClick={() => void bulk('approve')}>
            Approve selected
          </button>
          <button type="button" className="danger" disabled={busy} onClick={() => void bulk('reject')}>
            Reject selected
          </button>
        </div>
      )}
      {report && (
        <p className="message ok" role="status" data-testid="bulk-report">
          {report}
        </p>
      )}
      {!approvalsLoaded ? (
        <p aria-busy="true">Loading approvals…</p>
      ) : (
        <>
          {pending.length === 0 && (
            <div className="empty">
              <p>
                {shown.length ? 'Nothing else waits for your approval.' : 'Nothing waits for your approval.'}
              </p>
            </div>
          )}
          <div className="approvals">
            {shown.map((a) => (
              <ApprovalCard
                key={a.id}
                approval={a}
                selected={selected.has(a.id)}
                onSelect={(on) =>
                  setSelected((s) => {
                    const next = new Set(s);
                    if (on) next.add(a.id);
                    else next.delete(a.id);
                    return next;
                  })
                }
              />
            ))}
          </div>
        </>
      )}
    </section>
  );
}

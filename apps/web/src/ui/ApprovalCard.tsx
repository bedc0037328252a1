import { useState } from 'react';
import { ApiError } from '../api/api-client.ts';
import type { Approval } from '../api/types.ts';
import { describeAction } from '../state/describe-action.ts';
import { useDashboard } from './dashboard-context.ts';
import { json, when } from './format.ts';
import { onLinkClick } from './router.ts';

type Props = {
  approval: Approval;
  selected?: boolean | undefined;
  onSelect?: ((selected: boolean) => void) | undefined;
  showTask?: boolean;
};

export function ApprovalCard({ approval, selected, onSelect, showTask = true }: Props) {
  const { api, decide, taskTitle, queued, offline } = useDashboard();
  const [editing, setEditing] = useState<string | undefined>();
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ kind: 'ok' | 'conflict' | 'error'; text: string } | undefined>();
  const isQueued = queued.find((q) => q.approvalId === approval.id);
  const views = describeAction(approval.action);
  const pending = approval.status === 'pending';
  const title = taskTitle(approval.taskId);

  async function act(decision: 'approve' | 'reject') {
    setBusy(true);
    setMessage(undefined);
    try {
      const r = await decide(approval, decision, comment.trim() || undefined);
      if (r.result === 'queued')
        setMessage({ kind: 'ok', text: 'Queued: it will be sent when you are back online.' });
      else if (r.result === 'conflict')
        setMessage({
          kind: 'conflict',
          text: `Someone else decided this first (or it expired): ${r.message}`,
        });
      else setMessage({ kind: 'ok', text: decision === 'approve' ? 'Approved.' : 'Rejected.' });
    } catch (error) {
      setMessage({
        kind: 'error',
        text: error instanceof ApiError ? error.message : 'Could not send the decision.',
      });
    } finally {
      setBusy(false);
    }
  }

  async function approveEdited() {
    if (editing === undefined) return;
    let args: Record<string, unknown>;
    try {
      args = JSON.parse(editing) as Record<string, unknown>;
    } catch (e) {
      return setMessage({ kind: 'error', text: `Not valid JSON: ${(e as Error).message}` });
    }
    setBusy(true);
    try {
      await api.request('POST', `/approvals/${approval.id}/decision`, {
        decision: 'approve',
        args,
        ...(comment.trim() ? { comment: comment.trim() } : {}),
      });
      setEditing(undefined);
      setMessage({
        kind: 'ok',
        text: 'Edited: the changed action is a new approval, listed for a decision.',
      });
    } catch (error) {
      setMessage({
        kind: error instanceof ApiError && error.status === 409 ? 'conflict' : 'error',
        text: error instanceof ApiError ? error.message : 'Could not send the decision.',
      });
    } finally {
      setBusy(false);
    }
  }

  return (
    <article
      className="card approval"
      data-approval-id={approval.id}
      aria-label={`Approval: ${views.map((v) => v.tool).join(', ')}`}
    >
      <header>
        {onSelect && pending && !isQueued && (
          <label className="select">
            <input type="checkbox" checked={!!selected} onChange={(e) => onSelect(e.target.checked)} />
            <span className="visually-hidden">Select</span>
          </label>
        )}
        <div>
          {showTask && (
            <a href={`/tasks/${approval.taskId}`} onClick={onLinkClick} className="task-link">
              {title ?? 'Task'}
            </a>
          )}
          <p className="muted">
            {approval.scope === 'plan' ? 'The whole plan' : 'One step'} · asked {when(approval.createdAt)} ·
            expires {when(approval.expiresAt)}
            {approval.quorum > 1 ? ` · ${approval.approvals}/${approval.quorum} approvals` : ''}
          </p>
        </div>
        <span className={`status status-${approval.status}`}>
          {isQueued ? `queued: ${isQueued.decision}` : approval.status}
        </span>
      </header>
      {approval.reasons.length > 0 && (
        <ul className="reasons">
          {approval.reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      )}
      {views.map((v, i) => (
        <dl key={i} className="action">
          <dt>Action</dt>
          <dd>
            <code>{v.tool}</code>
            {v.key ? <span className="muted"> (step {v.key})</span> : null}
          </dd>
          {v.recipients.length > 0 && (
            <>
              <dt>Recipients</dt>
              <dd className="recipients">{v.recipients.join(', ')}</dd>
            </>
          )}
          {v.amounts.length > 0 && (
            <>
              <dt>Amount</dt>
              <dd className="amount">{v.amounts.join(', ')}</dd>
            </>
          )}
          {v.fields.map((f) => (
            <div key={f.name} className="field">
              <dt>{f.name}</dt>
              <dd>{f.value.includes('\n') ? <pre>{f.value}</pre> : f.value}</dd>
            </div>
          ))}
        </dl>
      ))}
      {approval.preview.length > 0 && (
        <details className="preview">
          <summary>Dry run: {approval.preview.length} effect(s)</summary>
          <pre>{json(approval.preview)}</pre>
        </details>
      )}
      {approval.decisions.length > 0 && (
        <ul className="decisions">
          {approval.decisions.map((d, i) => (
            <li key={i}>
              {d.decision} by {d.actorLabel ?? 'someone'} {when(d.at)}
              {d.comment ? `: “${d.comment}”` : ''}
            </li>
          ))}
        </ul>
      )}
      {pending && !isQueued && (
        <div className="decide">
          <label>
            <span className="visually-hidden">Comment</span>
            <input
              placeholder="Comment (optional)"
              value={comment}
              onChange={(e) => setComment(e.target.value)}
              maxLength={2000}
            />
          </label>
          <button type="button" className="primary" disabled={busy} onClick={() => void act('approve')}>
            Approve
          </button>
          <button type="button" className="danger" disabled={busy} onClick={() => void act('reject')}>
            Reject
          </button>
          {approval.scope === 'step' && !offline && editing === undefined && (
            <button
              type="button"
              className="link"
              onClick={() => setEditing(JSON.stringify((approval.action.args as object) ?? {}, null, 2))}
            >
              Edit before approving
            </button>
          )}
        </div>
      )}
      {pending && editing !== undefined && (
        <div className="editor">
          <label>
            Arguments (JSON)
            <textarea
              rows={8}
              spellCheck={false}
              value={editing}
              onChange={(e) => setEditing(e.target.value)}
            />
          </label>
          <button type="button" className="primary" disabled={busy} onClick={() => void approveEdited()}>
            Approve edited
          </button>{' '}
          <button type="button" onClick={() => setEditing(undefined)}>
            Cancel
          </button>
        </div>
      )}
      {message && (
        <p className={`message ${message.kind}`} role={message.kind === 'ok' ? 'status' : 'alert'}>
          {message.text}
        </p>
      )}
    </article>
  );
}

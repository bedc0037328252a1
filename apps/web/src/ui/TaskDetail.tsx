import { useCallback, useEffect, useState } from 'react';
import { ApiError, NetworkError } from '../api/api-client.ts';
import type { AuditEntry, TaskDetail } from '../api/types.ts';
import { ApprovalCard } from './ApprovalCard.tsx';
import { useDashboard } from './dashboard-context.ts';
import { json, when } from './format.ts';
import { onLinkClick } from './router.ts';
import { StatusBadge } from './StatusBadge.tsx';

export function TaskDetailView({ id }: { id: string }) {
  const { api, onChange, offline } = useDashboard();
  const [task, setTask] = useState<TaskDetail | undefined>();
  const [audit, setAudit] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | undefined>();

  const load = useCallback(async () => {
    try {
      setTask(await api.task(id));
      setError(undefined);
      api.audit({ targetId: id, limit: 50 }).then(
        (p) => setAudit(p.items),
        () => {},
      );
    } catch (e) {
      if (e instanceof ApiError && e.status === 404)
        setError('This task does not exist in this organisation.');
      else if (e instanceof NetworkError) setError('Offline: the task details are not saved on this device.');
      else setError((e as Error).message);
    }
  }, [api, id]);

  useEffect(() => {
    void load();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const off = onChange((c) => {
      if (c.taskId !== id) return;
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => void load(), 30);
    });
    return () => {
      off();
      if (timer) clearTimeout(timer);
    };
  }, [id, load, onChange, offline]);

  if (error)
    return (
      <section className="empty">
        <p role="alert">{error}</p>
        <a href="/" onClick={onLinkClick}>
          Back to the overview
        </a>
      </section>
    );
  if (!task) return <p aria-busy="true">Loading the task…</p>;

  return (
    <article aria-labelledby="task-title" className="task-detail" data-task-status={task.status}>
      <p>
        <a href="/" onClick={onLinkClick}>
          ← Overview
        </a>
      </p>
      <div className="section-head">
        <h1 id="task-title">{task.title}</h1>
        <StatusBadge status={task.status} />
      </div>
      <p className="muted">
        From {task.source} · created {when(task.createdAt)} · updated {when(task.updatedAt)}
        {task.planner ? ` · planned by ${task.planner}` : ''}
      </p>
      {task.needsActionReason && <p className="notice">Needs action: {task.needsActionReason}</p>}
      {task.error && <pre className="error">{json(task.error)}</pre>}
      {task.planSummary && <p>{task.planSummary}</p>}

      <section aria-labelledby="event-title" className="card">
        <h2 id="event-title">The event</h2>
        {task.event ? (
          <dl className="event">
            <dt>Source</dt>
            <dd>
              {task.event.source} / {task.event.type}
            </dd>
            {task.event.from && (
              <>
                <dt>From</dt>
                <dd>{task.event.from}</dd>
              </>
            )}
            {task.event.subject && (
              <>
                <dt>Subject</dt>
                <dd>{task.event.subject}</dd>
              </>
            )}
            <dt>Received</dt>
            <dd>{when(task.event.receivedAt)}</dd>
            {task.event.body && (
              <>
                <dt>Body</dt>
                <dd>
                  <pre>{task.event.body}</pre>
                </dd>
              </>
            )}
          </dl>
        ) : (
          <p className="muted">No event (created by hand).</p>
        )}
      </section>

      <section aria-labelledby="plan-title" className="card">
        <h2 id="plan-title">Plan</h2>
        {task.steps.length === 0 ? (
          <p className="muted">No plan yet.</p>
        ) : (
          <ol className="steps">
            {task.steps.map((s) => (
              <li key={s.id} className={`step step-${s.status}`} data-step-status={s.status}>
                <div className="step-head">
                  <strong>{s.key}</strong> <code>{s.tool}</code>{' '}
                  <span className={`status status-${s.status}`}>{s.status}</span>
                  <span className="muted">
                    risk {s.risk} · attempt {s.attempts}/{s.maxAttempts}
                    {s.dependsOn.length ? ` · after ${s.dependsOn.join(', ')}` : ''}
                  </span>
                </div>
                <details>
                  <summary>Arguments</summary>
                  <pre>{json(s.args)}</pre>
                </details>
                {s.result && (
                  <details>
                    <summary>Result</summary>
                    <pre>{json(s.result)}</pre>
                  </details>
                )}
                {s.error && <pre className="error">{json(s.error)}</pre>}
              </li>
            ))}
          </ol>
        )}
      </section>

      <section aria-labelledby="approvals-title">
        <h2 id="approvals-title">Approvals</h2>
        {task.approvals.length === 0 ? (
          <p className="muted">None needed.</p>
        ) : (
          task.approvals.map((a) => <ApprovalCard key={a.id} approval={a} showTask={false} />)
        )}
      </section>

      <section aria-labelledby="audit-title" className="card">
        <h2 id="audit-title">Audit trail</h2>
        {audit.length === 0 ? (
          <p className="muted">No entries.</p>
        ) : (
          <ul className="audit">
            {audit.map((e, i) => (
              <li key={e.seq ?? i}>
                <span className="muted">{when(e.at)}</span> <code>{e.action}</code> {e.actorLabel ?? ''}{' '}
                {e.outcome && e.outcome !== 'success' ? `(${e.outcome})` : ''}
              </li>
            ))}
          </ul>
        )}
      </section>
    </article>
  );
}

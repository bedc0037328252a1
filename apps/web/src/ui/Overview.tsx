import { useMemo, useState } from 'react';
import { TASK_STATUSES, type TaskStatus } from '../api/types.ts';
import {
  boardColumns,
  countByStatus,
  filterTasks,
  STATUS_LABEL,
  type TaskFilter,
} from '../state/tasks-state.ts';
import { useDashboard } from './dashboard-context.ts';
import { when } from './format.ts';
import { onLinkClick } from './router.ts';
import { StatusBadge } from './StatusBadge.tsx';
import { ActivityPanel } from './ActivityPanel.tsx';

export function Overview() {
  const { tasks } = useDashboard();
  const [filter, setFilter] = useState<TaskFilter>({ status: 'all', query: '' });
  const [view, setView] = useState<'board' | 'list'>(() => (window.innerWidth < 700 ? 'list' : 'board'));
  const all = useMemo(() => filterTasks(tasks, { status: 'all', query: '' }), [tasks]);
  const shown = useMemo(() => filterTasks(tasks, filter), [tasks, filter]);
  const counts = useMemo(() => countByStatus(all), [all]);
  const columns = useMemo(
    () => boardColumns(shown).filter((c) => c.tasks.length || filter.status === 'all'),
    [shown, filter.status],
  );

  return (
    <section aria-labelledby="overview-title">
      <div className="section-head">
        <h1 id="overview-title">What Steward is doing</h1>
        <div className="segmented" role="group" aria-label="View">
          <button type="button" aria-pressed={view === 'board'} onClick={() => setView('board')}>
            Board
          </button>
          <button type="button" aria-pressed={view === 'list'} onClick={() => setView('list')}>
            List
          </button>
        </div>
      </div>
      <ul className="counters" aria-label="Tasks by state">
        {TASK_STATUSES.filter(
          (s) =>
            counts[s] > 0 || ['needs_action', 'pending_approval', 'executing', 'done', 'failed'].includes(s),
        ).map((s) => (
          <li key={s}>
            <button
              type="button"
              className={`counter status-${s}`}
              aria-pressed={filter.status === s}
              onClick={() => setFilter((f) => ({ ...f, status: f.status === s ? 'all' : s }))}
              data-testid={`count-${s}`}
            >
              <strong>{counts[s]}</strong> {STATUS_LABEL[s]}
            </button>
          </li>
        ))}
      </ul>
      <div className="filters">
        <label>
          <span className="visually-hidden">Search tasks</span>
          <input
            type="search"
            placeholder="Search tasks"
            value={filter.query}
            onChange={(e) => setFilter((f) => ({ ...f, query: e.target.value }))}
          />
        </label>
        <label>
          <span className="visually-hidden">State</span>
          <select
            value={filter.status}
            onChange={(e) => setFilter((f) => ({ ...f, status: e.target.value as TaskFilter['status'] }))}
          >
            <option value="all">All states</option>
            <option value="open">Open</option>
            {TASK_STATUSES.map((s) => (
              <option key={s} value={s}>
                {STATUS_LABEL[s as TaskStatus]}
              </option>
            ))}
          </select>
        </label>
      </div>
      {!tasks.loaded ? (
        <p aria-busy="true">Loading tasks…</p>
      ) : shown.length === 0 ? (
        <div className="empty">
          <p>
            {all.length === 0
              ? 'No tasks yet. Events that arrive (email, files, webhooks) become tasks here.'
              : 'No task matches.'}
          </p>
        </div>
      ) : view === 'board' ? (
        <div className="board" data-testid="board">
          {columns.map((c) => (
            <section key={c.status} className="column" aria-label={STATUS_LABEL[c.status]}>
              <h2>
                {STATUS_LABEL[c.status]} <span className="muted">{c.tasks.length}</span>
              </h2>
              <ul>
                {c.tasks.map((t) => (
                  <li key={t.id} className="task-card" data-task-id={t.id}>
                    <a href={`/tasks/${t.id}`} onClick={onLinkClick}>
                      {t.title}
                    </a>
                    <span className="muted">
                      {t.source} · {when(t.updatedAt)}
                    </span>
                  </li>
                ))}
              </ul>
            </section>
          ))}
        </div>
      ) : (
        <ul className="task-list" data-testid="list">
          {shown.map((t) => (
            <li key={t.id} className="task-row" data-task-id={t.id}>
              <a href={`/tasks/${t.id}`} onClick={onLinkClick}>
                {t.title}
              </a>
              <StatusBadge status={t.status} />
              <span className="muted">
                {t.source} · {when(t.updatedAt)}
              </span>
            </li>
          ))}
        </ul>
      )}
      <ActivityPanel />
    </section>
  );
}

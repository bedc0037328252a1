import type { TaskStatus, TaskSummary } from '../api/types.ts';
import { TASK_STATUSES } from '../api/types.ts';

export interface TasksState {
  byId: Record<string, TaskSummary>;
  loaded: boolean;
  /** When the data was fetched (ms); for the "saved data from" note offline. */
  fetchedAt: number | null;
}

export type TasksAction =
  | { type: 'loaded'; items: TaskSummary[]; at: number }
  | { type: 'upsert'; task: TaskSummary }
  | { type: 'reset' };

export const initialTasks: TasksState = { byId: {}, loaded: false, fetchedAt: null };

const newer = (a: TaskSummary, b: TaskSummary | undefined) => !b || a.updatedAt >= b.updatedAt;

export function tasksReducer(state: TasksState, action: TasksAction): TasksState {
  switch (action.type) {
    case 'loaded': {
      const byId: Record<string, TaskSummary> = {};
      for (const t of action.items) byId[t.id] = t;
      // A live update that arrived while the list was loading is kept when it is newer.
      for (const t of Object.values(state.byId)) if (newer(t, byId[t.id])) byId[t.id] = t;
      return { byId, loaded: true, fetchedAt: action.at };
    }
    case 'upsert':
      if (!newer(action.task, state.byId[action.task.id])) return state;
      return { ...state, byId: { ...state.byId, [action.task.id]: action.task } };
    case 'reset':
      return initialTasks;
  }
}

export interface TaskFilter {
  status: TaskStatus | 'all' | 'open';
  query: string;
}

const OPEN: ReadonlySet<TaskStatus> = new Set([
  'needs_action',
  'planning',
  'pending_approval',
  'approved',
  'executing',
]);

/** Tasks matching the filter, newest first. The query matches title, source, status and id. */
export function filterTasks(state: TasksState, filter: TaskFilter): TaskSummary[] {
  const words = filter.query.toLowerCase().split(/\s+/).filter(Boolean);
  return Object.values(state.byId)
    .filter(
      (t) =>
        filter.status === 'all' ||
        (filter.status === 'open' ? OPEN.has(t.status) : t.status === filter.status),
    )
    .filter((t) => {
      const hay = `${t.title} ${t.source} ${t.status.replace('_', ' ')} ${t.id}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    })
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1));
}

export function countByStatus(tasks: TaskSummary[]): Record<TaskStatus, number> {
  const counts = Object.fromEntries(TASK_STATUSES.map((s) => [s, 0])) as Record<TaskStatus, number>;
  for (const t of tasks) counts[t.status]++;
  return counts;
}

/** The board's columns: each status with its tasks (in filter order). */
export function boardColumns(tasks: TaskSummary[]): { status: TaskStatus; tasks: TaskSummary[] }[] {
  return TASK_STATUSES.map((status) => ({ status, tasks: tasks.filter((t) => t.status === status) }));
}

export const STATUS_LABEL: Record<TaskStatus, string> = {
  needs_action: 'Needs action',
  planning: 'Planning',
  pending_approval: 'Waiting for approval',
  approved: 'Approved',
  executing: 'Executing',
  done: 'Done',
  rejected: 'Rejected',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

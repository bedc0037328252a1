import { describe, expect, it } from 'vitest';
import type { TaskSummary } from '../api/types.ts';
import { boardColumns, countByStatus, filterTasks, initialTasks, tasksReducer } from './tasks-state.ts';

const task = (id: string, over: Partial<TaskSummary> = {}): TaskSummary => ({
  id,
  title: `Task ${id}`,
  status: 'needs_action',
  source: 'email',
  planner: null,
  needsActionReason: null,
  createdAt: `2026-01-01T00:00:0${id}.000Z`,
  updatedAt: `2026-01-01T00:00:0${id}.000Z`,
  finishedAt: null,
  ...over,
});

describe('tasks reducer', () => {
  it('keeps a live update that is newer than the list being loaded', () => {
    let s = tasksReducer(initialTasks, {
      type: 'upsert',
      task: task('1', { status: 'done', updatedAt: '2026-01-01T00:01:00.000Z' }),
    });
    s = tasksReducer(s, { type: 'loaded', items: [task('1', { status: 'executing' }), task('2')], at: 1 });
    expect(s.byId['1']!.status).toBe('done');
    expect(Object.keys(s.byId).sort()).toEqual(['1', '2']);
    expect(s.loaded).toBe(true);
  });

  it('ignores an update older than what it has (out-of-order fetches)', () => {
    const s = tasksReducer(initialTasks, {
      type: 'upsert',
      task: task('1', { status: 'done', updatedAt: '2026-01-01T00:05:00.000Z' }),
    });
    const after = tasksReducer(s, {
      type: 'upsert',
      task: task('1', { status: 'executing', updatedAt: '2026-01-01T00:04:00.000Z' }),
    });
    expect(after).toBe(s);
  });

  it('filters by state and words, newest first, and counts and groups by state', () => {
    const s = tasksReducer(initialTasks, {
      type: 'loaded',
      at: 1,
      items: [
        task('1', { title: 'Invoice ACME', status: 'pending_approval' }),
        task('2', { title: 'Invoice Globex', status: 'done' }),
        task('3', { title: 'Newsletter', status: 'executing', source: 'folder' }),
      ],
    });
    expect(filterTasks(s, { status: 'all', query: '' }).map((t) => t.id)).toEqual(['3', '2', '1']);
    expect(filterTasks(s, { status: 'all', query: 'invoice acme' }).map((t) => t.id)).toEqual(['1']);
    expect(filterTasks(s, { status: 'open', query: '' }).map((t) => t.id)).toEqual(['3', '1']);
    expect(filterTasks(s, { status: 'done', query: 'INVOICE' }).map((t) => t.id)).toEqual(['2']);
    expect(filterTasks(s, { status: 'all', query: 'folder' }).map((t) => t.id)).toEqual(['3']);
    const all = filterTasks(s, { status: 'all', query: '' });
    expect(countByStatus(all)).toMatchObject({ pending_approval: 1, done: 1, executing: 1, failed: 0 });
    const columns = boardColumns(all);
    expect(columns.find((c) => c.status === 'done')!.tasks.map((t) => t.id)).toEqual(['2']);
    expect(columns.map((c) => c.status)[0]).toBe('needs_action');
  });
});

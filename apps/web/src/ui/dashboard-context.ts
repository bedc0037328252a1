import { createContext, useContext } from 'react';
import type { ApiClient } from '../api/api-client.ts';
import type { Approval, Change, TaskSummary, TenantInfo } from '../api/types.ts';
import type { LiveStatus } from '../live/live-stream.ts';
import type { QueuedDecision } from '../offline/offline-queue.ts';
import type { TasksState } from '../state/tasks-state.ts';

export type DecideResult =
  { result: 'decided' } | { result: 'queued' } | { result: 'conflict'; message: string };

export interface DashboardData {
  api: ApiClient;
  tenant: TenantInfo;
  offline: boolean;
  live: LiveStatus;
  tasks: TasksState;
  approvals: Approval[];
  approvalsLoaded: boolean;
  /** Approvals decided (or found decided) from this page, kept in view with their outcome. */
  decidedHere: Record<string, Approval>;
  queued: QueuedDecision[];
  /** Approve or reject; offline it is queued. A 409 comes back as a conflict to show. */
  decide(approval: Approval, decision: 'approve' | 'reject', comment?: string): Promise<DecideResult>;
  /** Subscribe to live changes (task detail refreshes on its own task's). */
  onChange(fn: (c: Change) => void): () => void;
  taskTitle(id: string): string | undefined;
  reload(): void;
}

export const DashboardContext = createContext<DashboardData | null>(null);

export function useDashboard(): DashboardData {
  const d = useContext(DashboardContext);
  if (!d) throw new Error('outside the dashboard');
  return d;
}

export type { TaskSummary };

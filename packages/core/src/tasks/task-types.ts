export const TASK_STATUSES = [
  'needs_action',
  'planning',
  'pending_approval',
  'approved',
  'executing',
  'done',
  'rejected',
  'failed',
  'cancelled',
] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const FINAL_TASK_STATUSES: ReadonlySet<string> = new Set(['done', 'rejected', 'failed', 'cancelled']);

export interface TaskRow {
  tenant_id: string;
  id: string;
  title: string;
  status: TaskStatus;
  source: string;
  event_id: string | null;
  created_by_type: string;
  created_by_id: string | null;
  plan_summary: string | null;
  planner: string | null;
  needs_action_reason: string | null;
  error: Record<string, unknown> | null;
  cancel_requested: boolean;
  created_at: Date;
  updated_at: Date;
  finished_at: Date | null;
}

export interface StepRow {
  tenant_id: string;
  id: string;
  task_id: string;
  key: string;
  position: number;
  kind: 'action' | 'compensation';
  compensates: string | null;
  tool: string;
  args: Record<string, unknown>;
  action_hash: string;
  depends_on: string[];
  risk: string;
  compensation: { tool: string; args: Record<string, unknown> } | null;
  needs_approval: boolean;
  approval_reasons: string[];
  status: string;
  attempts: number;
  max_attempts: number;
  retryable: boolean;
  next_attempt_at: Date | null;
  lease_expires_at: Date | null;
  idempotency_key: string;
  result: Record<string, unknown> | null;
  error: Record<string, unknown> | null;
  started_at: Date | null;
  finished_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export interface ApprovalRow {
  tenant_id: string;
  id: string;
  task_id: string;
  step_id: string | null;
  scope: 'step' | 'plan';
  action_hash: string;
  action: Record<string, unknown>;
  preview: unknown[];
  reasons: string[];
  status: string;
  quorum: number;
  forbid_self: boolean;
  requested_by_type: string;
  requested_by_id: string | null;
  expires_at: Date;
  decided_at: Date | null;
  used_at: Date | null;
  superseded_by: string | null;
  created_at: Date;
}

/** Plan-level approvals list the steps they cover with the hash each step must still have. */
export interface PlanAction {
  steps: { stepId: string; key: string; tool: string; args: Record<string, unknown>; hash: string }[];
}

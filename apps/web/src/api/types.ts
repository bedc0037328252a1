/** The API's shapes, as the dashboard uses them (see the OpenAPI document at /docs). */

export type TaskStatus =
  | 'needs_action'
  | 'planning'
  | 'pending_approval'
  | 'approved'
  | 'executing'
  | 'done'
  | 'rejected'
  | 'failed'
  | 'cancelled';

export const TASK_STATUSES: readonly TaskStatus[] = [
  'needs_action',
  'planning',
  'pending_approval',
  'approved',
  'executing',
  'done',
  'rejected',
  'failed',
  'cancelled',
];

export interface UserInfo {
  id: string;
  email: string;
  name: string;
  isPlatformAdmin: boolean;
}

export interface TenantInfo {
  id: string;
  slug: string;
  name: string;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
  expiresIn: number;
  user: UserInfo;
  tenant: TenantInfo;
}

/** Login answers this instead of tokens when the tenant requires a second factor. */
export interface MfaChallenge {
  mfaRequired: true;
  mfaToken: string;
  methods: string[];
}

export interface Me {
  kind: 'user' | 'api_key';
  user: { id: string; email: string; isPlatformAdmin: boolean } | null;
  tenant: TenantInfo;
  role: string | null;
  permissions: string[];
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface TaskSummary {
  id: string;
  title: string;
  status: TaskStatus;
  source: string;
  planner: string | null;
  needsActionReason: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

export interface Step {
  id: string;
  key: string;
  kind: string;
  tool: string;
  args: Record<string, unknown>;
  dependsOn: string[];
  risk: string;
  needsApproval: boolean;
  approvalReasons: string[];
  status: string;
  attempts: number;
  maxAttempts: number;
  result: Record<string, unknown> | null;
  error: Record<string, unknown> | null;
  startedAt: string | null;
  finishedAt: string | null;
}

export interface Decision {
  actorLabel: string | null;
  decision: string;
  comment: string | null;
  at: string;
}

export interface Approval {
  id: string;
  taskId: string;
  stepId: string | null;
  scope: string;
  status: string;
  action: Record<string, unknown>;
  actionHash: string;
  preview: unknown[];
  reasons: string[];
  quorum: number;
  approvals: number;
  decisions: Decision[];
  expiresAt: string;
  decidedAt: string | null;
  createdAt: string;
}

export interface TaskEvent {
  id: string;
  source: string;
  type: string;
  externalId: string | null;
  from: string | null;
  subject: string | null;
  body: string | null;
  data: Record<string, unknown>;
  receivedAt: string;
}

export interface TaskDetail extends TaskSummary {
  planSummary: string | null;
  error: Record<string, unknown> | null;
  event: TaskEvent | null;
  steps: Step[];
  approvals: Approval[];
}

export interface AuditEntry {
  id?: string;
  seq?: number;
  at?: string;
  createdAt?: string;
  action: string;
  outcome?: string;
  actorLabel?: string | null;
  targetType?: string | null;
  targetId?: string | null;
  details?: Record<string, unknown> | null;
}

/** One change announced on the live stream: ids only. */
export interface Change {
  kind: 'task' | 'step' | 'approval';
  id: string;
  taskId: string;
}

import type { TSchema } from '@sinclair/typebox';
import type { Tx } from '@steward/db/database';

export const RISK_LEVELS = ['low', 'medium', 'high', 'critical'] as const;
export type RiskLevel = (typeof RISK_LEVELS)[number];

export function riskRank(level: RiskLevel): number {
  return RISK_LEVELS.indexOf(level);
}

/** The higher of two risk levels: a label can raise a tool's risk, never lower it. */
export function maxRisk(a: RiskLevel, b: RiskLevel | undefined): RiskLevel {
  if (!b) return a;
  return riskRank(b) > riskRank(a) ? b : a;
}

/** One side effect a call would have, shown in dry-run previews. */
export interface SideEffect {
  kind: string;
  summary: string;
  target?: string;
}

export interface ToolContext {
  tenantId: string;
  tenantSlug: string;
  taskId: string;
  /** A transaction scoped to this tenant, for tools that record something in Steward itself. */
  withTenant<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Stable for every attempt of the same step: receivers use it to drop duplicates. */
  idempotencyKey: string;
  signal: AbortSignal;
}

/**
 * A capability the planner may use. What it can do (risk, retries, amounts, recipients) is declared
 * here, in code; the approval policy reads these declarations, never the planner's prose.
 */
export interface Tool<Args = Record<string, unknown>> {
  name: string;
  description: string;
  risk: RiskLevel;
  /** False for actions that must never run twice automatically (payments). */
  retryable: boolean;
  args: TSchema;
  /** The money this call moves, for amount thresholds. */
  amount?(args: Args): number | undefined;
  /** Who or what receives something (email addresses, payees, hosts), for new-recipient rules. */
  recipients?(args: Args): string[];
  /** What the call would do, without doing it. */
  preview(args: Args): SideEffect[];
  execute(ctx: ToolContext, args: Args): Promise<Record<string, unknown>>;
}

/** A tool failure. Only retryable ones are tried again, and only for tools that allow retries. */
export class ToolError extends Error {
  readonly retryable: boolean;
  readonly code: string;
  constructor(code: string, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ToolError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

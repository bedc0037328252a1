import { RISK_LEVELS, maxRisk, riskRank, type RiskLevel, type Tool } from '../tools/tool.ts';

/** A tenant's approval policy (tenant settings key `approvalPolicy`). */
export interface ApprovalPolicy {
  /** Steps at or above this effective risk need approval. */
  approveFromRisk: RiskLevel;
  /** Steps moving more than this amount need approval (undefined: no amount rule). */
  amountThreshold?: number | undefined;
  /** A recipient or payee never used before needs approval. */
  newRecipients: boolean;
  /** Tools that always need approval, whatever else is true (payments). */
  neverAutomatic: string[];
  /** What happens to a step no other rule catches. */
  default: 'auto' | 'approve';
  /** Distinct approvers needed. */
  quorum: number;
  /** Whoever started the task may not approve it. */
  forbidSelfApproval: boolean;
  /** Approvals expire after this many minutes. */
  expiresInMinutes: number;
  /** One approval per step, or one for the whole plan after a dry-run preview of every side effect. */
  approvalMode: 'step' | 'plan';
}

export const DEFAULT_POLICY: ApprovalPolicy = {
  approveFromRisk: 'medium',
  amountThreshold: 100,
  newRecipients: true,
  neverAutomatic: ['payment.send'],
  default: 'auto',
  quorum: 1,
  forbidSelfApproval: true,
  expiresInMinutes: 7 * 24 * 60,
  approvalMode: 'step',
};

export function policyFromSettings(settings: Record<string, unknown>): ApprovalPolicy {
  const raw = (settings.approvalPolicy ?? {}) as Partial<ApprovalPolicy>;
  const p = { ...DEFAULT_POLICY, ...raw };
  return {
    approveFromRisk: RISK_LEVELS.includes(p.approveFromRisk)
      ? p.approveFromRisk
      : DEFAULT_POLICY.approveFromRisk,
    amountThreshold:
      typeof p.amountThreshold === 'number' && p.amountThreshold >= 0 ? p.amountThreshold : undefined,
    newRecipients: p.newRecipients !== false,
    neverAutomatic: Array.isArray(p.neverAutomatic)
      ? [
          ...new Set([
            ...DEFAULT_POLICY.neverAutomatic,
            ...p.neverAutomatic.filter((t) => typeof t === 'string'),
          ]),
        ]
      : DEFAULT_POLICY.neverAutomatic,
    default: p.default === 'approve' ? 'approve' : 'auto',
    quorum: Number.isInteger(p.quorum) && p.quorum >= 1 && p.quorum <= 10 ? p.quorum : 1,
    forbidSelfApproval: p.forbidSelfApproval !== false,
    expiresInMinutes:
      Number.isInteger(p.expiresInMinutes) && p.expiresInMinutes > 0
        ? p.expiresInMinutes
        : DEFAULT_POLICY.expiresInMinutes,
    approvalMode: p.approvalMode === 'plan' ? 'plan' : 'step',
  };
}

export interface StepDecision {
  required: boolean;
  /** Why approval is needed (empty when it is not). */
  reasons: string[];
  effectiveRisk: RiskLevel;
}

/**
 * Decide in code whether a validated step needs a human. Inputs are the tool's own declarations
 * and the step's validated arguments; a risk label from the planner can only raise the risk.
 */
export function decideStep(
  policy: ApprovalPolicy,
  tool: Tool,
  args: Record<string, unknown>,
  opts: { plannerRisk?: RiskLevel | undefined; knownRecipients: ReadonlySet<string> },
): StepDecision {
  const effectiveRisk = maxRisk(tool.risk, opts.plannerRisk);
  const reasons: string[] = [];
  if (policy.neverAutomatic.includes(tool.name)) reasons.push(`${tool.name} is never automatic`);
  if (riskRank(effectiveRisk) >= riskRank(policy.approveFromRisk)) {
    reasons.push(`risk ${effectiveRisk} is at or above ${policy.approveFromRisk}`);
  }
  const amount = tool.amount?.(args);
  if (policy.amountThreshold !== undefined && amount !== undefined && !(amount <= policy.amountThreshold)) {
    reasons.push(`amount ${amount} is over ${policy.amountThreshold}`);
  }
  if (policy.newRecipients) {
    const fresh = (tool.recipients?.(args) ?? []).filter((r) => !opts.knownRecipients.has(r.toLowerCase()));
    if (fresh.length) reasons.push(`new recipient: ${fresh.join(', ')}`);
  }
  if (!reasons.length && policy.default === 'approve')
    reasons.push('the policy asks for approval by default');
  return { required: reasons.length > 0, reasons, effectiveRisk };
}

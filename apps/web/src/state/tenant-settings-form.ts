/** The tenant settings the admin screen edits: the approval policy and the session/MFA policy. */
export interface SettingsForm {
  approveFromRisk: 'low' | 'medium' | 'high' | 'critical';
  amountThreshold: string;
  newRecipients: boolean;
  neverAutomatic: string;
  default: 'auto' | 'approve';
  quorum: string;
  forbidSelfApproval: boolean;
  expiresInMinutes: string;
  approvalMode: 'step' | 'plan';
  mfa: 'none' | 'all' | 'roles';
  mfaRoles: string;
  sessionIdleMinutes: string;
  sessionAbsoluteHours: string;
  maxSessionsPerUser: string;
}

const list = (s: string) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean);

/** The form for stored settings (the server's defaults where a value is not set). */
export function formFromSettings(settings: Record<string, unknown>): SettingsForm {
  const p = (settings.approvalPolicy ?? {}) as Record<string, unknown>;
  const mfa = settings.mfaRequired;
  const str = (v: unknown) => (typeof v === 'number' ? String(v) : '');
  return {
    approveFromRisk:
      (['low', 'medium', 'high', 'critical'] as const).find((r) => r === p.approveFromRisk) ?? 'high',
    amountThreshold: str(p.amountThreshold),
    newRecipients: p.newRecipients !== false,
    neverAutomatic: Array.isArray(p.neverAutomatic) ? p.neverAutomatic.join(', ') : '',
    default: p.default === 'approve' ? 'approve' : 'auto',
    quorum: str(p.quorum) || '1',
    forbidSelfApproval: p.forbidSelfApproval !== false,
    expiresInMinutes: str(p.expiresInMinutes) || String(7 * 24 * 60),
    approvalMode: p.approvalMode === 'plan' ? 'plan' : 'step',
    mfa: mfa === true ? 'all' : Array.isArray(mfa) ? 'roles' : 'none',
    mfaRoles: Array.isArray(mfa) ? mfa.join(', ') : '',
    sessionIdleMinutes: str(settings.sessionIdleMinutes),
    sessionAbsoluteHours: str(settings.sessionAbsoluteHours),
    maxSessionsPerUser: str(settings.maxSessionsPerUser),
  };
}

/** The PATCH /tenant `settings` for a form, or the first problem (a field name and why). */
export function settingsFromForm(
  f: SettingsForm,
): { settings: Record<string, unknown> } | { problem: string } {
  const int = (v: string, name: string, min: number, max: number): number | null | string => {
    if (v.trim() === '') return null;
    const n = Number(v);
    return Number.isInteger(n) && n >= min && n <= max
      ? n
      : `${name} must be a whole number from ${min} to ${max}`;
  };
  const quorum = int(f.quorum, 'Quorum', 1, 10);
  const expires = int(f.expiresInMinutes, 'Expiry', 1, 525_600);
  const idle = int(f.sessionIdleMinutes, 'Idle timeout', 1, 525_600);
  const absolute = int(f.sessionAbsoluteHours, 'Session lifetime', 1, 8760);
  const max = int(f.maxSessionsPerUser, 'Sessions per user', 1, 1000);
  for (const v of [quorum, expires, idle, absolute, max]) if (typeof v === 'string') return { problem: v };
  const amount = f.amountThreshold.trim() === '' ? undefined : Number(f.amountThreshold);
  if (amount !== undefined && !(Number.isFinite(amount) && amount >= 0))
    return { problem: 'Amount threshold must be a number of 0 or more' };
  const roles = list(f.mfaRoles);
  if (f.mfa === 'roles' && roles.length === 0) return { problem: 'Name the roles that need MFA' };
  return {
    settings: {
      approvalPolicy: {
        approveFromRisk: f.approveFromRisk,
        ...(amount !== undefined ? { amountThreshold: amount } : {}),
        newRecipients: f.newRecipients,
        neverAutomatic: list(f.neverAutomatic),
        default: f.default,
        quorum: quorum ?? 1,
        forbidSelfApproval: f.forbidSelfApproval,
        expiresInMinutes: expires ?? 7 * 24 * 60,
        approvalMode: f.approvalMode,
      },
      mfaRequired: f.mfa === 'all' ? true : f.mfa === 'roles' ? roles : false,
      sessionIdleMinutes: idle,
      sessionAbsoluteHours: absolute,
      maxSessionsPerUser: max,
    },
  };
}

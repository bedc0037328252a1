import { invalid } from '../errors/app-error.ts';

/**
 * A tenant's sign-in and session rules, read from its settings (PATCH /api/v1/tenant):
 *
 * - `mfaRequired`: `true` (every member) or a list of role names (members with one of them).
 * - `sessionIdleMinutes`: a session unused this long stops working (default 480 = 8 hours).
 * - `sessionAbsoluteHours`: a session stops working this long after sign-in (default 720 = 30 days).
 * - `maxSessionsPerUser`: at most this many open sessions per user; signing in once more revokes the
 *   oldest (default 20).
 */
export interface SessionPolicy {
  mfaRequired: boolean | readonly string[];
  idleSeconds: number;
  absoluteSeconds: number;
  maxSessions: number;
}

export const DEFAULT_SESSION_POLICY: SessionPolicy = {
  mfaRequired: false,
  idleSeconds: 480 * 60,
  absoluteSeconds: 720 * 3600,
  maxSessions: 20,
};

export const SESSION_SETTING_KEYS = [
  'mfaRequired',
  'sessionIdleMinutes',
  'sessionAbsoluteHours',
  'maxSessionsPerUser',
] as const;

function int(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw invalid(`body/settings/${name} must be an integer from ${min} to ${max}`);
  return value;
}

function mfaSetting(value: unknown): boolean | string[] {
  if (typeof value === 'boolean') return value;
  if (
    Array.isArray(value) &&
    value.length <= 50 &&
    value.every((r) => typeof r === 'string' && /^[a-z][a-z0-9_-]{0,39}$/.test(r))
  )
    return value as string[];
  throw invalid('body/settings/mfaRequired must be true, false or a list of role names');
}

/** Validates the session keys of a settings patch (throws VALIDATION_FAILED naming the field). */
export function checkSessionSettings(settings: Record<string, unknown>): void {
  parseSessionPolicy(settings, true);
}

/** The policy from stored settings. Stored values were validated; anything odd falls back to the default. */
export function parseSessionPolicy(
  settings: Record<string, unknown> | undefined,
  strict = false,
): SessionPolicy {
  const s = settings ?? {};
  const read = <T>(key: string, parse: (v: unknown) => T, fallback: T): T => {
    if (s[key] === undefined || s[key] === null) return fallback;
    try {
      return parse(s[key]);
    } catch (error) {
      if (strict) throw error;
      return fallback;
    }
  };
  const d = DEFAULT_SESSION_POLICY;
  return {
    mfaRequired: read('mfaRequired', mfaSetting, d.mfaRequired),
    idleSeconds: read(
      'sessionIdleMinutes',
      (v) => int(v, 'sessionIdleMinutes', 1, 525_600) * 60,
      d.idleSeconds,
    ),
    absoluteSeconds: read(
      'sessionAbsoluteHours',
      (v) => int(v, 'sessionAbsoluteHours', 1, 8760) * 3600,
      d.absoluteSeconds,
    ),
    maxSessions: read('maxSessionsPerUser', (v) => int(v, 'maxSessionsPerUser', 1, 1000), d.maxSessions),
  };
}

/** Does the tenant require MFA of a member with this role? */
export function mfaRequiredFor(policy: SessionPolicy, role: string | null): boolean {
  if (policy.mfaRequired === true) return true;
  if (policy.mfaRequired === false) return false;
  return role !== null && policy.mfaRequired.includes(role);
}

/** Is a session past its idle or absolute limit? */
export function sessionTimedOut(
  policy: SessionPolicy,
  session: { created_at: Date; last_used_at: Date },
  now = Date.now(),
): 'idle' | 'absolute' | null {
  if (now - session.created_at.getTime() >= policy.absoluteSeconds * 1000) return 'absolute';
  if (now - session.last_used_at.getTime() >= policy.idleSeconds * 1000) return 'idle';
  return null;
}

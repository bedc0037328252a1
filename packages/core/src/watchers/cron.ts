import { CronExpressionParser } from 'cron-parser';
import { invalid } from '../errors/app-error.ts';

/**
 * Cron expressions of schedules: five fields (minute hour day-of-month month day-of-week, minute
 * precision) or one of @yearly, @annually, @monthly, @weekly, @daily, @hourly, @weekdays, @weekends,
 * evaluated in an IANA time zone. Wall-clock times skipped by a daylight-saving change run at the
 * first instant after the gap; repeated ones run once.
 */

const normalize = (cron: string) => {
  const expr = cron.trim();
  return expr.startsWith('@') ? expr.toLowerCase() : expr;
};

const ALIASES = new Set([
  '@yearly',
  '@annually',
  '@monthly',
  '@weekly',
  '@daily',
  '@hourly',
  '@weekdays',
  '@weekends',
]);

/** True for a time zone name the runtime knows (IANA, such as Europe/Berlin, or UTC). */
export function isTimeZone(name: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]{0,99}$/.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** Why a cron expression and time zone cannot be used, or undefined when they can. */
export function scheduleProblem(cron: string, timezone: string): string | undefined {
  if (!isTimeZone(timezone)) return `"${timezone.slice(0, 100)}" is not a known time zone`;
  const expr = cron.trim();
  if (expr.startsWith('@')) {
    if (!ALIASES.has(expr.toLowerCase())) return `"${expr.slice(0, 50)}" is not a supported cron alias`;
  } else if (expr.split(/\s+/).length !== 5) {
    return 'cron must have five fields: minute hour day-of-month month day-of-week';
  }
  try {
    CronExpressionParser.parse(normalize(expr), { tz: timezone, currentDate: new Date() }).next();
  } catch (error) {
    return `cron "${expr.slice(0, 100)}" is not valid: ${(error as Error).message.slice(0, 200)}`;
  }
  return undefined;
}

/** Throws VALIDATION_FAILED when the expression or the time zone cannot be used. */
export function assertSchedule(cron: string, timezone: string): void {
  const problem = scheduleProblem(cron, timezone);
  if (problem) throw invalid(problem);
}

/** The first run strictly after `after`, in the schedule's time zone. */
export function nextRunAfter(cron: string, timezone: string, after: Date): Date {
  const it = CronExpressionParser.parse(normalize(cron), { tz: timezone, currentDate: after });
  return it.next().toDate();
}

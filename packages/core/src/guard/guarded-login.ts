import { login, type RequestInfo } from '../identity/session-service.ts';
import type { Resources } from '../resources.ts';

/**
 * Password sign-in behind the brute-force limits: the attempt counts against the account and the
 * client address first (429 RATE_LIMITED once either is used up, without checking the password),
 * and a successful sign-in gives the attempt back. Limits slide and expire: no permanent lockout.
 * Known and unknown accounts take the same path (login verifies a dummy hash for unknown ones).
 */
export async function guardedLogin(
  res: Resources,
  input: { email: string; password: string; tenant?: string | undefined },
  info: RequestInfo,
): ReturnType<typeof login> {
  const ticket = await res.guard?.beginLogin(input.email, info.ip);
  const tokens = await login(res, input, info);
  await ticket?.succeeded();
  return tokens;
}

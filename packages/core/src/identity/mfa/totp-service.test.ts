import { generate } from 'otplib';
import { describe, expect, it } from 'vitest';
import { matchTotp, newTotpSecret, TOTP_PERIOD_SECONDS } from './totp-service.ts';

const secret = newTotpSecret();
// The middle of a time step, so ±n steps are unambiguous.
const now = (Math.floor(Date.now() / 1000 / TOTP_PERIOD_SECONDS) * TOTP_PERIOD_SECONDS + 15) * 1000;
const step = Math.floor(now / 1000 / TOTP_PERIOD_SECONDS);
const codeAt = (offsetSteps: number) =>
  generate({ secret, epoch: now / 1000 + offsetSteps * TOTP_PERIOD_SECONDS });

describe('TOTP (RFC 6238)', () => {
  it('accepts the current step and one step of drift either way, and gives the step matched', async () => {
    expect(await matchTotp(secret, await codeAt(0), 0, now)).toBe(step);
    expect(await matchTotp(secret, await codeAt(-1), 0, now)).toBe(step - 1);
    expect(await matchTotp(secret, await codeAt(1), 0, now)).toBe(step + 1);
  });

  it('rejects two steps of drift either way', async () => {
    expect(await matchTotp(secret, await codeAt(-2), 0, now)).toBeNull();
    expect(await matchTotp(secret, await codeAt(2), 0, now)).toBeNull();
  });

  it('rejects a step at or before the last one used (replay), accepts a later one', async () => {
    expect(await matchTotp(secret, await codeAt(0), step, now)).toBeNull();
    expect(await matchTotp(secret, await codeAt(-1), step, now)).toBeNull();
    expect(await matchTotp(secret, await codeAt(1), step, now)).toBe(step + 1);
  });

  it('rejects malformed codes and another secret', async () => {
    expect(await matchTotp(secret, '12345', 0, now)).toBeNull();
    expect(await matchTotp(secret, 'abcdef', 0, now)).toBeNull();
    expect(await matchTotp(newTotpSecret(), await codeAt(0), 0, now)).toBeNull();
  });
});

import { describe, expect, it } from 'vitest';
import { formFromSettings, settingsFromForm } from './tenant-settings-form.ts';

describe('tenant settings form', () => {
  it('round-trips stored settings', () => {
    const stored = {
      approvalPolicy: {
        approveFromRisk: 'medium',
        amountThreshold: 500,
        newRecipients: false,
        neverAutomatic: ['email.send'],
        default: 'approve',
        quorum: 2,
        forbidSelfApproval: true,
        expiresInMinutes: 60,
        approvalMode: 'plan',
      },
      mfaRequired: ['owner', 'admin'],
      sessionIdleMinutes: 30,
      sessionAbsoluteHours: 12,
      maxSessionsPerUser: 5,
    };
    expect(settingsFromForm(formFromSettings(stored))).toEqual({ settings: stored });
  });

  it('starts from the defaults, and sends null to reset unset session limits', () => {
    const f = formFromSettings({});
    expect(f).toMatchObject({ approveFromRisk: 'high', quorum: '1', mfa: 'none', newRecipients: true });
    const r = settingsFromForm(f) as { settings: Record<string, unknown> };
    expect(r.settings.mfaRequired).toBe(false);
    expect(r.settings.sessionIdleMinutes).toBeNull();
    expect(formFromSettings({ mfaRequired: true }).mfa).toBe('all');
  });

  it('names the field in a problem', () => {
    const f = formFromSettings({});
    expect(settingsFromForm({ ...f, quorum: '11' })).toEqual({
      problem: 'Quorum must be a whole number from 1 to 10',
    });
    expect(settingsFromForm({ ...f, amountThreshold: '-1' })).toEqual({
      problem: 'Amount threshold must be a number of 0 or more',
    });
    expect(settingsFromForm({ ...f, mfa: 'roles', mfaRoles: ' ' })).toEqual({
      problem: 'Name the roles that need MFA',
    });
  });
});

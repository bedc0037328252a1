import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import type { RiskLevel, Tool } from '../tools/tool.ts';
import { DEFAULT_POLICY, decideStep, policyFromSettings, type ApprovalPolicy } from './approval-policy.ts';

const tool = (name: string, risk: RiskLevel, extra: Partial<Tool> = {}): Tool => ({
  name,
  description: name,
  risk,
  retryable: true,
  args: Type.Object({}),
  preview: () => [],
  execute: async () => ({}),
  ...extra,
});

const noop = tool('noop', 'low');
const email = tool('email.send', 'medium', {
  recipients: (a) => [String(a.to)],
});
const transfer = tool('bank.transfer', 'low', {
  amount: (a) => (typeof a.amount === 'number' ? a.amount : undefined),
  recipients: (a) => (a.payee ? [String(a.payee)] : []),
});
const payment = tool('payment.send', 'low');

const none = new Set<string>();
const policy = (over: Partial<ApprovalPolicy> = {}): ApprovalPolicy => ({ ...DEFAULT_POLICY, ...over });

describe('decideStep: risk', () => {
  it('lets a low-risk step run on its own', () => {
    expect(decideStep(policy(), noop, {}, { knownRecipients: none })).toEqual({
      required: false,
      reasons: [],
      effectiveRisk: 'low',
    });
  });

  it('asks for approval at or above the policy risk', () => {
    const medium = tool('crm.update', 'medium');
    expect(decideStep(policy(), medium, {}, { knownRecipients: none })).toMatchObject({
      required: true,
      reasons: ['risk medium is at or above medium'],
    });
    expect(
      decideStep(policy({ approveFromRisk: 'high' }), medium, {}, { knownRecipients: none }).required,
    ).toBe(false);
  });

  it("lets a planner's label raise the risk but never lower it", () => {
    const medium = tool('crm.update', 'medium');
    const lowered = decideStep(policy(), medium, {}, { plannerRisk: 'low', knownRecipients: none });
    expect(lowered).toMatchObject({ required: true, effectiveRisk: 'medium' });
    const raised = decideStep(policy(), noop, {}, { plannerRisk: 'critical', knownRecipients: none });
    expect(raised).toMatchObject({ required: true, effectiveRisk: 'critical' });
    expect(raised.reasons).toEqual(['risk critical is at or above medium']);
  });
});

describe('decideStep: never automatic', () => {
  it('always asks for tools listed as never automatic, whatever their risk', () => {
    const p = policy({ approveFromRisk: 'critical', amountThreshold: undefined });
    expect(decideStep(p, payment, {}, { knownRecipients: none })).toMatchObject({
      required: true,
      reasons: ['payment.send is never automatic'],
    });
    expect(
      decideStep(policy({ neverAutomatic: ['noop'] }), noop, {}, { knownRecipients: none }).reasons,
    ).toEqual(['noop is never automatic']);
  });
});

describe('decideStep: amount threshold', () => {
  const p = policy({ amountThreshold: 100, newRecipients: false });

  it('lets amounts up to the threshold through and asks above it', () => {
    expect(decideStep(p, transfer, { amount: 100 }, { knownRecipients: none }).required).toBe(false);
    expect(decideStep(p, transfer, { amount: 0 }, { knownRecipients: none }).required).toBe(false);
    expect(decideStep(p, transfer, { amount: 100.01 }, { knownRecipients: none })).toMatchObject({
      required: true,
      reasons: ['amount 100.01 is over 100'],
    });
  });

  it('asks when the amount is not a comparable number', () => {
    const weird = tool('bank.transfer', 'low', { amount: () => Number.NaN });
    expect(decideStep(p, weird, {}, { knownRecipients: none }).required).toBe(true);
  });

  it('has no amount rule without a threshold, and ignores tools that move no money', () => {
    expect(
      decideStep(
        policy({ amountThreshold: undefined, newRecipients: false }),
        transfer,
        { amount: 1e9 },
        {
          knownRecipients: none,
        },
      ).required,
    ).toBe(false);
    expect(decideStep(p, transfer, {}, { knownRecipients: none }).required).toBe(false);
    expect(decideStep(p, noop, { amount: 1e9 }, { knownRecipients: none }).required).toBe(false);
  });

  it('a threshold of 0 asks for any positive amount', () => {
    expect(
      decideStep(
        policy({ amountThreshold: 0, newRecipients: false }),
        transfer,
        { amount: 0.01 },
        {
          knownRecipients: none,
        },
      ).required,
    ).toBe(true);
  });
});

describe('decideStep: new recipients', () => {
  const p = policy({ approveFromRisk: 'critical', amountThreshold: undefined });

  it('asks for a recipient or payee never used before', () => {
    expect(decideStep(p, transfer, { payee: 'IBAN-NEW' }, { knownRecipients: none })).toMatchObject({
      required: true,
      reasons: ['new recipient: IBAN-NEW'],
    });
  });

  it('lets known recipients through, whatever their case', () => {
    const known = new Set(['ap@vendor.test', 'iban-1']);
    expect(decideStep(p, email, { to: 'AP@Vendor.test' }, { knownRecipients: known }).required).toBe(false);
    expect(decideStep(p, transfer, { payee: 'IBAN-1' }, { knownRecipients: known }).required).toBe(false);
  });

  it('does not ask when the rule is off', () => {
    expect(
      decideStep({ ...p, newRecipients: false }, transfer, { payee: 'IBAN-NEW' }, { knownRecipients: none })
        .required,
    ).toBe(false);
  });

  it('collects every reason that applies', () => {
    const all = decideStep(
      policy({ amountThreshold: 10 }),
      transfer,
      { amount: 50, payee: 'X' },
      {
        plannerRisk: 'high',
        knownRecipients: none,
      },
    );
    expect(all.reasons).toEqual([
      'risk high is at or above medium',
      'amount 50 is over 10',
      'new recipient: X',
    ]);
  });
});

describe('decideStep: default', () => {
  it('asks for everything else when the default is approve', () => {
    expect(decideStep(policy({ default: 'approve' }), noop, {}, { knownRecipients: none })).toEqual({
      required: true,
      reasons: ['the policy asks for approval by default'],
      effectiveRisk: 'low',
    });
  });
});

describe('policyFromSettings', () => {
  it('gives the default policy for a tenant without one', () => {
    expect(policyFromSettings({})).toEqual(DEFAULT_POLICY);
  });

  it('takes valid values and ignores invalid ones', () => {
    expect(
      policyFromSettings({
        approvalPolicy: {
          approveFromRisk: 'high',
          amountThreshold: 500,
          newRecipients: false,
          default: 'approve',
          quorum: 3,
          forbidSelfApproval: false,
          expiresInMinutes: 60,
          approvalMode: 'plan',
        },
      }),
    ).toMatchObject({
      approveFromRisk: 'high',
      amountThreshold: 500,
      newRecipients: false,
      default: 'approve',
      quorum: 3,
      forbidSelfApproval: false,
      expiresInMinutes: 60,
      approvalMode: 'plan',
    });
    expect(
      policyFromSettings({
        approvalPolicy: {
          approveFromRisk: 'none',
          amountThreshold: -1,
          default: 'yolo',
          quorum: 0,
          expiresInMinutes: 0,
          approvalMode: 'whatever',
        },
      }),
    ).toMatchObject({
      approveFromRisk: 'medium',
      amountThreshold: undefined,
      default: 'auto',
      quorum: 1,
      expiresInMinutes: DEFAULT_POLICY.expiresInMinutes,
      approvalMode: 'step',
    });
    expect(policyFromSettings({ approvalPolicy: { quorum: 11 } }).quorum).toBe(1);
    expect(policyFromSettings({ approvalPolicy: { quorum: 1.5 } }).quorum).toBe(1);
    expect(policyFromSettings({ approvalPolicy: { expiresInMinutes: 0.5 } }).expiresInMinutes).toBe(
      DEFAULT_POLICY.expiresInMinutes,
    );
  });

  it('keeps payments never automatic even when a tenant lists other tools', () => {
    expect(policyFromSettings({ approvalPolicy: { neverAutomatic: [] } }).neverAutomatic).toEqual([
      'payment.send',
    ]);
    expect(policyFromSettings({ approvalPolicy: { neverAutomatic: ['wire', 7] } }).neverAutomatic).toEqual([
      'payment.send',
      'wire',
    ]);
  });
});

import { TypeCompiler } from '@sinclair/typebox/compiler';
import { describe, expect, it } from 'vitest';
import { eventView } from './event-view.ts';
import { conditionsMatch, planFromPlaybooks, PlaybookStep, type Playbook } from './playbook.ts';
import { playbookProblems } from './playbook-service.ts';

const invoice = eventView({
  source: 'email',
  type: 'message',
  externalId: 'm-1',
  from: 'Billing@Vendor.test',
  subject: 'Your INVOICE #42',
  body: 'Amount due: $250.00. Reply to ap@vendor.test',
});

const book = (over: Partial<Playbook> & Pick<Playbook, 'name'>): Playbook => ({
  id: over.name,
  enabled: true,
  priority: 100,
  when: {},
  steps: [{ key: 'a', tool: 'noop', args: {} }],
  ...over,
});

describe('conditionsMatch', () => {
  it('matches everything when there are no conditions', () => {
    expect(conditionsMatch({}, invoice)).toBe(true);
  });

  it('matches source and type against lists', () => {
    expect(conditionsMatch({ source: ['file', 'email'] }, invoice)).toBe(true);
    expect(conditionsMatch({ source: ['file'] }, invoice)).toBe(false);
    expect(conditionsMatch({ type: ['message'] }, invoice)).toBe(true);
    expect(conditionsMatch({ type: ['note'] }, invoice)).toBe(false);
  });

  it('compares text case-insensitively: contains, equals, endsWith, matches', () => {
    expect(conditionsMatch({ subject: { contains: 'invoice' } }, invoice)).toBe(true);
    expect(conditionsMatch({ subject: { contains: 'receipt' } }, invoice)).toBe(false);
    expect(conditionsMatch({ from: { equals: 'billing@vendor.TEST' } }, invoice)).toBe(true);
    expect(conditionsMatch({ from: { equals: 'billing@vendor' } }, invoice)).toBe(false);
    expect(conditionsMatch({ from: { endsWith: '@VENDOR.test' } }, invoice)).toBe(true);
    expect(conditionsMatch({ from: { endsWith: '@other.test' } }, invoice)).toBe(false);
    expect(conditionsMatch({ subject: { matches: '#\\d+$' } }, invoice)).toBe(true);
    expect(conditionsMatch({ body: { matches: '^reply' } }, invoice)).toBe(false);
  });

  it('needs every condition of a text match and every field to hold', () => {
    expect(conditionsMatch({ subject: { contains: 'invoice', endsWith: '#42' } }, invoice)).toBe(true);
    expect(conditionsMatch({ subject: { contains: 'invoice', endsWith: '#43' } }, invoice)).toBe(false);
    expect(
      conditionsMatch(
        { source: ['email'], subject: { contains: 'invoice' }, body: { contains: 'nope' } },
        invoice,
      ),
    ).toBe(false);
  });

  it('treats an invalid regular expression as no match instead of throwing', () => {
    expect(conditionsMatch({ subject: { matches: '(' } }, invoice)).toBe(false);
  });

  it('compares the extracted amount', () => {
    expect(conditionsMatch({ amount: { gt: 100 } }, invoice)).toBe(true);
    expect(conditionsMatch({ amount: { gt: 250 } }, invoice)).toBe(false);
    expect(conditionsMatch({ amount: { gte: 250 } }, invoice)).toBe(true);
    expect(conditionsMatch({ amount: { lt: 250 } }, invoice)).toBe(false);
    expect(conditionsMatch({ amount: { lte: 250, gte: 200 } }, invoice)).toBe(true);
    expect(conditionsMatch({ amount: { gte: 300, lte: 400 } }, invoice)).toBe(false);
  });

  it('does not match an amount condition when the event has no amount', () => {
    const none = eventView({ source: 'email', type: 'message', subject: 'hello' });
    expect(conditionsMatch({ amount: { lt: 1_000_000 } }, none)).toBe(false);
  });
});

describe('planFromPlaybooks', () => {
  it('returns nothing when no enabled playbook matches', () => {
    expect(planFromPlaybooks([], invoice)).toBeUndefined();
    expect(
      planFromPlaybooks(
        [
          book({ name: 'off', enabled: false }),
          book({ name: 'other', when: { subject: { contains: 'receipt' } } }),
        ],
        invoice,
      ),
    ).toBeUndefined();
  });

  it('takes the first match by priority, then by name, skipping disabled ones', () => {
    const found = planFromPlaybooks(
      [
        book({ name: 'late', priority: 200 }),
        book({ name: 'zeta', priority: 10 }),
        book({ name: 'alpha', priority: 10 }),
        book({ name: 'first but off', priority: 1, enabled: false }),
        book({ name: 'first but no match', priority: 1, when: { source: ['file'] } }),
      ],
      invoice,
    );
    expect(found?.playbook.name).toBe('alpha');
  });

  it('turns the steps into a draft with templated arguments', () => {
    const found = planFromPlaybooks(
      [
        book({
          name: 'Invoices',
          when: { subject: { contains: 'invoice' }, amount: { gt: 0 } },
          steps: [
            {
              key: 'file',
              tool: 'vault.write_note',
              args: { title: 'Invoice {{event.externalId}}', body: '{{event.body}}' },
            },
            {
              key: 'pay',
              tool: 'payment.send',
              args: { amount: '{{extracted.amount}}', currency: '{{extracted.currency}}' },
              dependsOn: ['file'],
              risk: 'high',
              compensation: { tool: 'payment.refund', args: { amount: '{{extracted.amount}}' } },
            },
          ],
        }),
      ],
      invoice,
    );
    expect(found?.draft).toEqual({
      summary: 'Playbook "Invoices"',
      steps: [
        {
          key: 'file',
          tool: 'vault.write_note',
          args: { title: 'Invoice m-1', body: 'Amount due: $250.00. Reply to ap@vendor.test' },
          dependsOn: [],
          risk: undefined,
          compensation: undefined,
        },
        {
          key: 'pay',
          tool: 'payment.send',
          args: { amount: 250, currency: 'USD' },
          dependsOn: ['file'],
          risk: 'high',
          compensation: { tool: 'payment.refund', args: { amount: 250 } },
        },
      ],
    });
  });
});

describe('the PlaybookStep schema', () => {
  const check = TypeCompiler.Compile(PlaybookStep);

  it('accepts a step and refuses unknown fields, bad keys and unknown risk labels', () => {
    expect(check.Check({ key: 'a1', tool: 'noop', args: {} })).toBe(true);
    expect(check.Check({ key: 'a1', tool: 'noop', args: {}, run: 'rm -rf /' })).toBe(false);
    expect(check.Check({ key: 'A', tool: 'noop', args: {} })).toBe(false);
    expect(check.Check({ key: '1a', tool: 'noop', args: {} })).toBe(false);
    expect(check.Check({ key: 'a', tool: 'noop', args: {}, risk: 'none' })).toBe(false);
    expect(
      check.Check({ key: 'a', tool: 'noop', args: {}, compensation: { tool: 'x', args: {}, extra: 1 } }),
    ).toBe(false);
  });
});

describe('playbookProblems', () => {
  const tools = new Set(['noop', 'notify.user']);

  it('accepts a well-formed playbook', () => {
    expect(
      playbookProblems(
        {
          when: { subject: { matches: '^inv' } },
          steps: [
            { key: 'a', tool: 'noop', args: {} },
            {
              key: 'b',
              tool: 'notify.user',
              args: {},
              dependsOn: ['a'],
              compensation: { tool: 'noop', args: {} },
            },
          ],
        },
        tools,
      ),
    ).toEqual([]);
  });

  it('lists every problem: no steps, duplicate keys, unknown tools, bad dependencies, bad regex', () => {
    expect(playbookProblems({ when: {}, steps: [] }, tools)).toEqual([
      'body/steps must have at least one step',
    ]);
    const problems = playbookProblems(
      {
        when: { from: { matches: '(' } },
        steps: [
          { key: 'a', tool: 'noop', args: {} },
          { key: 'a', tool: 'shell.exec', args: {} },
          {
            key: 'b',
            tool: 'noop',
            args: {},
            dependsOn: ['b', 'zzz'],
            compensation: { tool: 'wire', args: {} },
          },
        ],
      },
      tools,
    );
    expect(problems).toEqual([
      'body/steps: key "a" is used twice',
      'body/steps/a: tool "shell.exec" is not available to this tenant',
      'body/steps/b/compensation: tool "wire" is not available to this tenant',
      'body/steps/b: cannot depend on "b"',
      'body/steps/b: cannot depend on "zzz"',
      'body/when: "(" is not a valid regular expression',
    ]);
  });
});

import { describe, expect, it } from 'vitest';
import { actionLabel, describeAction } from './describe-action.ts';

describe('describeAction', () => {
  it('pulls recipients and amounts out of a step action', () => {
    const [v] = describeAction({
      tool: 'email.send',
      args: { to: 'a@x.test, b@x.test', cc: ['c@x.test'], subject: 'Hi', amount: 120, currency: 'EUR' },
    });
    expect(v).toEqual({
      key: undefined,
      tool: 'email.send',
      recipients: ['a@x.test', 'b@x.test', 'c@x.test'],
      amounts: ['120 EUR'],
      fields: [{ name: 'subject', value: 'Hi' }],
    });
    expect(actionLabel({ tool: 'email.send', args: { to: 'a@x.test', amount: 5 } })).toBe(
      'email.send to a@x.test 5',
    );
  });

  it('lists each step of a plan approval, with nested arguments as JSON', () => {
    const views = describeAction({
      steps: [
        { key: 'file', tool: 'vault.write_note', args: { title: 'T', meta: { a: 1 } } },
        { key: 'pay', tool: 'noop', args: {} },
      ],
    });
    expect(views.map((v) => [v.key, v.tool])).toEqual([
      ['file', 'vault.write_note'],
      ['pay', 'noop'],
    ]);
    expect(views[0]!.fields[1]).toEqual({ name: 'meta', value: '{\n  "a": 1\n}' });
  });
});

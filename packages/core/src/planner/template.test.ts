import { describe, expect, it } from 'vitest';
import { eventView } from './event-view.ts';
import { fillTemplate } from './template.ts';

const view = eventView({
  source: 'email',
  type: 'message',
  externalId: 'm-7',
  from: 'billing@vendor.test',
  subject: 'Invoice 7',
  body: 'Amount due: $250.00',
  data: { customer: { id: 'c-1', tier: 2 }, tags: ['a', 'b'], flag: false, none: null },
});

describe('fillTemplate', () => {
  it('keeps the type of a value that is the whole string (a number stays a number)', () => {
    expect(fillTemplate('{{extracted.amount}}', view)).toBe(250);
    expect(fillTemplate('{{ data.customer.tier }}', view)).toBe(2);
    expect(fillTemplate('{{data.flag}}', view)).toBe(false);
    expect(fillTemplate('{{data.customer}}', view)).toEqual({ id: 'c-1', tier: 2 });
    expect(fillTemplate('{{data.tags}}', view)).toEqual(['a', 'b']);
  });

  it('inserts values as text inside a longer string', () => {
    expect(fillTemplate('pay {{extracted.amount}} {{extracted.currency}} for {{event.subject}}', view)).toBe(
      'pay 250 USD for Invoice 7',
    );
    expect(fillTemplate('tier {{data.customer.tier}}, tags {{data.tags}}', view)).toBe(
      'tier 2, tags ["a","b"]',
    );
    expect(fillTemplate('customer {{data.customer}}', view)).toBe('customer {"id":"c-1","tier":2}');
  });

  it('gives empty text for anything missing or null', () => {
    expect(fillTemplate('{{data.missing}}', view)).toBe('');
    expect(fillTemplate('{{data.none}}', view)).toBe('');
    expect(fillTemplate('x{{data.customer.missing.deeper}}y', view)).toBe('xy');
    expect(fillTemplate('{{nothing.here}}', view)).toBe('');
  });

  it('fills nested objects and arrays and leaves other values alone', () => {
    expect(
      fillTemplate(
        {
          to: '{{event.from}}',
          lines: ['{{event.externalId}}', 3, true, null],
          deep: { n: '{{extracted.amount}}' },
        },
        view,
      ),
    ).toEqual({ to: 'billing@vendor.test', lines: ['m-7', 3, true, null], deep: { n: 250 } });
  });

  it('evaluates nothing: expressions and prototype paths are not values', () => {
    expect(fillTemplate('{{ process.exit(1) }}', view)).toBe('{{ process.exit(1) }}');
    expect(fillTemplate('{{constructor.constructor("return process")()}}', view)).toBe(
      '{{constructor.constructor("return process")()}}',
    );
    expect(fillTemplate('{{event.constructor}}', view)).toBe('');
    expect(fillTemplate('{{data.__proto__}}', view)).toBe('');
    expect(fillTemplate('{{event.subject.length}}', view)).toBe('');
    expect(fillTemplate('{{process.env}}', view)).toBe('');
    expect(fillTemplate('${process.env.HOME}', view)).toBe('${process.env.HOME}');
  });

  it('does not expand placeholders that arrive inside event text', () => {
    const hostile = eventView({
      source: 'email',
      type: 'message',
      subject: '{{data.secret}}',
      body: 'see {{event.from}}',
      from: 'x@y.test',
      data: { secret: 'hunter2' },
    });
    expect(fillTemplate('{{event.subject}}', hostile)).toBe('{{data.secret}}');
    expect(fillTemplate('subject: {{event.subject}} / {{event.body}}', hostile)).toBe(
      'subject: {{data.secret}} / see {{event.from}}',
    );
  });
});

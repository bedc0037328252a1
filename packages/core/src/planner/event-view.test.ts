import { describe, expect, it } from 'vitest';
import { eventView, extract } from './event-view.ts';

describe('extract', () => {
  it.each([
    ['Amount due: $250.00', 250, 'USD'],
    ['Total $1,250.50 now', 1250.5, 'USD'],
    ['pay € 12 today', 12, 'EUR'],
    ['£7.5 fee', 7.5, 'GBP'],
    ['EUR 99 for the licence', 99, 'EUR'],
    ['usd 3,000 wire', 3000, 'USD'],
    ['a bill of 300 GBP', 300, 'GBP'],
    ['12,345,678.9 EUR', 12345678.9, 'EUR'],
  ])('reads the amount and currency in %j', (text, amount, currency) => {
    expect(extract(text, {})).toMatchObject({ amount, currency });
  });

  it('takes the first amount in the text', () => {
    expect(extract('first $10, then $20', {}).amount).toBe(10);
  });

  it('finds no amount in text without a currency', () => {
    const out = extract('order 12345 has 3 items, call 555-1234', {});
    expect(out.amount).toBeUndefined();
    expect(out.currency).toBeUndefined();
  });

  it('prefers a numeric data.amount (and its currency) over the text', () => {
    expect(extract('invoice for $999', { amount: 42, currency: 'eur' })).toEqual({
      amount: 42,
      currency: 'EUR',
      emails: [],
    });
  });

  it('ignores a data.amount that is not a finite number', () => {
    expect(extract('invoice for $999', { amount: '5' }).amount).toBe(999);
    expect(extract('invoice for $999', { amount: Number.POSITIVE_INFINITY }).amount).toBe(999);
  });

  it('collects e-mail addresses, lower-cased and without duplicates', () => {
    expect(extract('From Bob@Example.com, cc bob@example.com and ann@x.test.', {}).emails).toEqual([
      'bob@example.com',
      'ann@x.test',
    ]);
  });

  it('keeps at most 50 addresses', () => {
    const text = Array.from({ length: 80 }, (_, i) => `u${i}@x.test`).join(' ');
    expect(extract(text, {}).emails).toHaveLength(50);
  });

  it('reads only the first 100,000 characters of untrusted text', () => {
    const text = `${'x'.repeat(100_000)} $5 someone@late.test`;
    expect(extract(text, {})).toEqual({ emails: [] });
  });
});

describe('extract on hostile input', () => {
  // Each of these took tens of seconds with unbounded patterns (quadratic backtracking).
  it('handles long runs of letters, digits and digit groups', () => {
    expect(extract('x'.repeat(100_000), {})).toEqual({ emails: [] });
    expect(extract(`a@${'b'.repeat(99_000)}`, {})).toEqual({ emails: [] });
    expect(extract('1'.repeat(100_000), {})).toEqual({ emails: [] });
    expect(extract(`1${',000'.repeat(24_000)}`, {})).toEqual({ emails: [] });
    expect(extract(`${'1.'.repeat(49_000)} $5`, {})).toMatchObject({ amount: 5, currency: 'USD' });
  });

  it('does not read part of an over-long number as an amount', () => {
    expect(extract('1234567890123456789 USD', {}).amount).toBeUndefined();
    expect(extract('$1234567890123456789', {}).amount).toBeUndefined();
    expect(extract('$123456789012345', {}).amount).toBe(123456789012345);
  });

  it('does not take the tail of an over-long local part as an address', () => {
    expect(extract(`${'a'.repeat(65)}@x.test and ok@x.test`, {}).emails).toEqual(['ok@x.test']);
  });
});

describe('eventView', () => {
  it('fills missing fields with empty values and extracts from subject and body', () => {
    const view = eventView({
      source: 'email',
      type: 'message',
      externalId: null,
      from: null,
      subject: 'Invoice $80',
      body: null,
      data: null,
    });
    expect(view).toEqual({
      source: 'email',
      type: 'message',
      externalId: '',
      from: '',
      subject: 'Invoice $80',
      body: '',
      data: {},
      extracted: { amount: 80, currency: 'USD', emails: [] },
    });
  });

  it('extracts from the body too', () => {
    const view = eventView({ source: 'file', type: 'note', subject: 'hi', body: 'send 20 USD to a@b.test' });
    expect(view.extracted).toEqual({ amount: 20, currency: 'USD', emails: ['a@b.test'] });
  });
});

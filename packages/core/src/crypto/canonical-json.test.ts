import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical-json.ts';

/**
 * The containers' definition written plainly (arrays of entries, a comparator): the fast version must
 * match it. Scalars and dates go to canonicalJson itself (their cases are the example tests above).
 */
function reference(value: unknown): string {
  if (value === null || typeof value !== 'object' || value instanceof Date) return canonicalJson(value);
  if (Array.isArray(value)) return '[' + value.map((v) => reference(v)).join(',') + ']';
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return '{' + entries.map(([k, v]) => JSON.stringify(k) + ':' + reference(v)).join(',') + '}';
}

describe('canonicalJson', () => {
  it('sorts object keys at every depth and writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: 1, y: 2 }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}',
    );
  });

  it('gives the same text for equal data whatever the key order', () => {
    const one = {
      tool: 'email.send',
      args: { to: ['a@x.test', 'b@x.test'], subject: 'Hi', body: { html: false, text: 't' } },
    };
    const two = {
      args: { body: { text: 't', html: false }, subject: 'Hi', to: ['a@x.test', 'b@x.test'] },
      tool: 'email.send',
    };
    expect(canonicalJson(one)).toBe(canonicalJson(two));
    expect(JSON.parse(canonicalJson(one))).toEqual(one);
  });

  it('keeps array order (it is meaningful)', () => {
    expect(canonicalJson([2, 1])).not.toBe(canonicalJson([1, 2]));
  });

  it('sorts keys by UTF-16 code units, as RFC 8785 does', () => {
    // U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB01 (and after 'z' and 'é').
    expect(canonicalJson({ '\uFB01': 1, '\u{1F600}': 2, é: 3, z: 4, Z: 5, '10': 6, '9': 7 })).toBe(
      '{"10":6,"9":7,"Z":5,"z":4,"é":3,"\u{1F600}":2,"\uFB01":1}',
    );
  });

  it('writes numbers in their shortest form, and -0 as 0', () => {
    expect(canonicalJson([1.0, 1.5, 1e21, 1e-7, -0, 0.1 + 0.2, 2 ** 53])).toBe(
      '[1,1.5,1e+21,1e-7,0,0.30000000000000004,9007199254740992]',
    );
  });

  it('escapes strings as JSON does', () => {
    expect(canonicalJson({ s: 'quote " backslash \\ newline \n tab \t nul \u0000 é' })).toBe(
      '{"s":"quote \\" backslash \\\\ newline \\n tab \\t nul \\u0000 é"}',
    );
  });

  it('drops undefined object members, writes undefined array items as null', () => {
    expect(canonicalJson({ a: undefined, b: null, c: [undefined, 1] })).toBe('{"b":null,"c":[null,1]}');
    expect(canonicalJson({ a: undefined })).toBe(canonicalJson({}));
  });

  it('writes dates as ISO strings and bigints as integers', () => {
    expect(canonicalJson({ at: new Date('2025-01-02T03:04:05.678Z'), n: 12345678901234567890n })).toBe(
      '{"at":"2025-01-02T03:04:05.678Z","n":12345678901234567890}',
    );
  });

  it('writes scalars and empty containers', () => {
    expect([null, true, false, 'x', 0, {}, []].map(canonicalJson)).toEqual([
      'null',
      'true',
      'false',
      '"x"',
      '0',
      '{}',
      '[]',
    ]);
  });

  it('refuses numbers JSON cannot represent', () => {
    expect(() => canonicalJson({ n: NaN })).toThrow(TypeError);
    expect(() => canonicalJson([Infinity])).toThrow(TypeError);
    expect(() => canonicalJson(-Infinity)).toThrow(TypeError);
  });

  it('different data gives different text', () => {
    expect(canonicalJson({ 'a.b': 1 })).not.toBe(canonicalJson({ a: { b: 1 } }));
    expect(canonicalJson({ a: '1' })).not.toBe(canonicalJson({ a: 1 }));
  });

  it('matches the plain definition for any JSON value, dates, bigints and undefined members', () => {
    const leaf = fc.oneof(
      fc.string({ unit: 'binary' }),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
      fc.integer(),
      fc.boolean(),
      fc.constant(null),
      fc.constant(undefined),
      fc.bigInt(),
      fc.date({ noInvalidDate: true }),
    );
    const value = fc.letrec((tie) => ({
      any: fc.oneof({ depthSize: 'small' }, leaf, tie('array'), tie('object')),
      array: fc.array(tie('any'), { maxLength: 5 }),
      object: fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), tie('any'), { maxKeys: 6 }),
    })).any;
    fc.assert(
      fc.property(value, (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }),
      { numRuns: 2000 },
    );
  });
});

import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../crypto/canonical-json.ts';
import { entryHash, GENESIS_HASH, type AuditEntry } from './audit-log.ts';

type Hashed = Omit<AuditEntry, 'hash'>;

const key = Buffer.alloc(32, 7);
const first: Hashed = {
  tenantId: '295ebd2b-0849-47c0-892b-7f029bafdfb0',
  seq: 42,
  at: '2026-12-05T07:00:00.000Z',
  actorType: 'api_key',
  actorId: 'k-1',
  actorLabel: null,
  action: 'task.created',
  targetType: 'task',
  targetId: 'b1f0c3a2-0849-47c0-892b-7f029bafdfb0',
  outcome: 'success',
  requestId: 'req-1',
  ip: '127.0.0.1',
  details: { source: 'bench', nested: { b: [1, 'é', null], a: true } },
  prevHash: GENESIS_HASH,
};

/** The definition: the HMAC of canonicalJson of the entry's fields (all but its hash). */
const defined = (e: Hashed) => createHmac('sha256', key).update(canonicalJson(e)).digest('hex');

describe('entryHash', () => {
  it('gives the hashes chains already stored carry (vectors from the first implementation)', () => {
    const a = entryHash(key, first);
    expect(a).toBe('82f5a094493b0ed7a78c5b05270b0172f16a437322ba147fa7031817e96471a3');
    const second = { ...first, seq: 43, actorId: null, requestId: null, ip: null, details: {}, prevHash: a };
    expect(entryHash(key, second)).toBe('7400f13e4326df440d57b5019fbd29a70ba8c38991f291f5e4811d89dc67ada2');
  });

  it('is the HMAC of canonicalJson of the fields, for any entry', () => {
    const text = fc.option(fc.string({ unit: 'binary', maxLength: 40 }));
    const entry = fc.record({
      tenantId: fc.uuid(),
      seq: fc.integer({ min: 1 }),
      at: fc.date({ noInvalidDate: true }).map((d) => d.toISOString()),
      actorType: fc.string({ maxLength: 10 }),
      actorId: text,
      actorLabel: text,
      action: fc.string({ maxLength: 20 }),
      targetType: text,
      targetId: text,
      outcome: fc.constantFrom('success', 'failure', 'denied'),
      requestId: text,
      ip: text,
      details: fc.dictionary(fc.string({ unit: 'binary', maxLength: 8 }), fc.jsonValue({ maxDepth: 3 })),
      prevHash: fc.stringMatching(/^[0-9a-f]{64}$/),
    });
    fc.assert(
      fc.property(entry, (e) => {
        expect(entryHash(key, e)).toBe(defined(e));
      }),
      { numRuns: 1000 },
    );
  });

  it('changes with every field', () => {
    const base = entryHash(key, first);
    const changed: Partial<Hashed>[] = [
      { tenantId: '00000000-0000-0000-0000-000000000001' },
      { seq: 43 },
      { at: '2026-12-05T07:00:00.001Z' },
      { actorType: 'user' },
      { actorId: 'k-2' },
      { actorLabel: 'x' },
      { action: 'task.deleted' },
      { targetType: 'step' },
      { targetId: 'other' },
      { outcome: 'failure' },
      { requestId: 'req-2' },
      { ip: '127.0.0.2' },
      { details: { source: 'bench' } },
      { prevHash: '1'.repeat(64) },
    ];
    for (const c of changed) expect(entryHash(key, { ...first, ...c })).not.toBe(base);
  });
});

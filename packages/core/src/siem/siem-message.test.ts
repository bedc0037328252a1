import { describe, expect, it } from 'vitest';
import type { AuditEntry } from '../audit/audit-log.ts';
import { octetFrame, parseSyslog, readOctetFrames, SD_ID, syslogMessage } from './siem-message.ts';

const entry = (over: Partial<AuditEntry> = {}): AuditEntry => ({
  tenantId: '11111111-1111-4111-8111-111111111111',
  seq: 42,
  at: '2026-11-22T03:00:00.123Z',
  actorType: 'user',
  actorId: 'u1',
  actorLabel: 'ann "the admin" ]',
  action: 'role.updated with spaces',
  targetType: null,
  targetId: null,
  outcome: 'denied',
  requestId: null,
  ip: null,
  details: { note: 'ünïcødé \\ ] "' },
  prevHash: 'a'.repeat(64),
  hash: 'b'.repeat(64),
  ...over,
});

describe('RFC 5424 messages', () => {
  it('carries tenant, seq and hash in structured data and the entry as JSON', () => {
    const m = parseSyslog(syslogMessage(entry(), { facility: 13, hostname: 'steward host' }));
    expect(m.pri).toBe(13 * 8 + 4);
    expect(m.version).toBe(1);
    expect(m.timestamp).toBe('2026-11-22T03:00:00.123Z');
    expect(m.hostname).toBe('steward_host');
    expect(m.appName).toBe('steward');
    expect(m.msgId).toBe('role.updated_with_spaces');
    expect(m.structuredData[SD_ID]).toEqual({
      tenant: '11111111-1111-4111-8111-111111111111',
      seq: '42',
      hash: 'b'.repeat(64),
      prevHash: 'a'.repeat(64),
      outcome: 'denied',
    });
    expect(JSON.parse(m.msg)).toMatchObject({
      seq: 42,
      actorLabel: 'ann "the admin" ]',
      details: { note: 'ünïcødé \\ ] "' },
    });
  });

  it('success is notice; frames are counted in bytes (not characters) and split back exactly', () => {
    const one = syslogMessage(entry({ outcome: 'success', seq: 1 }), { facility: 10, hostname: 'h' });
    const two = syslogMessage(entry({ seq: 2 }), { facility: 10, hostname: 'h' });
    expect(parseSyslog(one).pri).toBe(85);
    const stream = Buffer.concat([octetFrame(one), octetFrame(two)]);
    expect(stream.subarray(0, String(one.length).length + 1).toString()).toBe(`${one.length} `);
    const half = readOctetFrames(stream.subarray(0, stream.length - 5));
    expect(half.frames).toHaveLength(1);
    const all = readOctetFrames(stream);
    expect(all.frames.map((f) => parseSyslog(f).structuredData[SD_ID]!.seq)).toEqual(['1', '2']);
    expect(all.rest.length).toBe(0);
  });
});

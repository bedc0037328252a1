import { describe, expect, it } from 'vitest';
import { describeHealth } from './describe-health.ts';

const now = Date.parse('2026-01-01T12:00:00Z');

describe('describeHealth', () => {
  it('says which watchers run, stopped or never started, and how far SIEM destinations lag', () => {
    const lines = describeHealth(
      {
        watchers: [
          { name: 'scheduler', state: 'held', holder: null, renewedAt: '2026-01-01T11:59:50Z' },
          { name: 'watch:folder', state: 'expired', holder: null, renewedAt: '2026-01-01T11:30:00Z' },
          { name: 'watch:imap', state: 'never', holder: null, renewedAt: null },
        ],
        mailboxes: [{ id: 'm1', name: 'inbox', lastProgressAt: null }],
        siem: [
          { id: 's1', name: 'splunk', enabled: true, lag: 0, failing: false, lastErrorAt: null },
          {
            id: 's2',
            name: 'elk',
            enabled: true,
            lag: 12,
            failing: true,
            lastErrorAt: '2026-01-01T11:58:00Z',
          },
          { id: 's3', name: 'old', enabled: false, lag: 3, failing: false, lastErrorAt: null },
        ],
      },
      now,
    );
    expect(lines.map((l) => [l.text, l.ok])).toEqual([
      ['Scheduler: running, renewed 10 s ago', true],
      ['Folder watcher: stopped (last renewed 30 min ago)', false],
      ['Mailbox watcher: never started', undefined],
      ['Mailbox inbox: no mail read yet', undefined],
      ['SIEM splunk: up to date', true],
      ['SIEM elk: failing since 2 min ago, 12 entries behind', false],
      ['SIEM old: disabled', undefined],
    ]);
  });

  it('names the holding process when the server tells it', () => {
    const [line] = describeHealth(
      {
        watchers: [
          { name: 'scheduler', state: 'held', holder: 'host:1:42:ab', renewedAt: '2026-01-01T12:00:00Z' },
        ],
        mailboxes: [],
        siem: [],
      },
      now,
    );
    expect(line!.text).toBe('Scheduler: running on host:1:42:ab, renewed 0 s ago');
  });
});

describe('describeHealth: connections', () => {
  it('says ok, failing (with the safe reason) or never used, and disabled for an off MCP server', () => {
    const base = { watchers: [], mailboxes: [], siem: [] };
    const c = (over: Record<string, unknown>) => ({
      id: 'x',
      kind: 'smtp' as const,
      name: 'mail',
      enabled: true,
      state: 'never' as const,
      lastSuccessAt: null,
      lastErrorAt: null,
      lastError: null,
      ...over,
    });
    const lines = describeHealth(
      {
        ...base,
        connections: [
          c({ id: 'a', state: 'ok', lastSuccessAt: '2026-01-01T11:59:30Z' }),
          c({
            id: 'b',
            kind: 'http',
            name: 'crm',
            state: 'failing',
            lastSuccessAt: '2026-01-01T10:00:00Z',
            lastErrorAt: '2026-01-01T11:55:00Z',
            lastError: 'HTTP_STATUS: crm.example.com answered 401',
          }),
          c({ id: 'c', kind: 'imap', name: 'inbox' }),
          c({ id: 'd', kind: 'mcp', name: 'files', enabled: false, state: 'ok' }),
        ],
      },
      now,
    );
    expect(lines.map((l) => [l.state, l.ok, l.text, l.detail])).toEqual([
      ['ok', true, 'SMTP mail: last used 30 s ago', undefined],
      [
        'failing',
        false,
        'HTTP crm: failing since 5 min ago (last worked 2 h ago)',
        'HTTP_STATUS: crm.example.com answered 401',
      ],
      ['never used', undefined, 'IMAP inbox: never used', undefined],
      ['disabled', undefined, 'MCP files: disabled', undefined],
    ]);
  });
});

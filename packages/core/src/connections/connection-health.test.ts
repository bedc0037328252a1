import { describe, expect, it } from 'vitest';
import { healthState, MAX_HEALTH_ERROR, safeFailureText } from './connection-health.ts';

describe('safeFailureText', () => {
  it('keeps the code and the message, on one line', () => {
    expect(safeFailureText({ code: 'HTTP_STATUS', message: 'api.example.com answered 401' })).toBe(
      'HTTP_STATUS: api.example.com answered 401',
    );
    expect(safeFailureText({ code: 'SMTP_FAILED', message: 'line one\r\nline two' })).toBe(
      'SMTP_FAILED: line one line two',
    );
  });

  it('scrubs the secrets it is given, credentials in URLs and token-looking values', () => {
    const text = safeFailureText(
      {
        code: 'IMAP_AUTH_FAILED',
        message:
          'login as robot with hunter2-secret failed at imaps://robot:pw@mail.example.com/ (Bearer abc.def, password=xyz)',
      },
      ['hunter2-secret', undefined, 'ab'],
    );
    expect(text).not.toContain('hunter2-secret');
    expect(text).not.toContain(':pw@');
    expect(text).not.toContain('abc.def');
    expect(text).not.toContain('xyz');
    expect(text).toContain('[secret]');
    expect(text).toContain('imaps://[credentials]@mail.example.com');
  });

  it('bounds the length and replaces an unexpected code', () => {
    const text = safeFailureText({ code: 'not a code', message: 'x'.repeat(1000) });
    expect(text.length).toBe(MAX_HEALTH_ERROR);
    expect(text.startsWith('ERROR: xxx')).toBe(true);
  });
});

describe('healthState', () => {
  const t1 = new Date('2026-01-01T10:00:00Z');
  const t2 = new Date('2026-01-01T11:00:00Z');
  it('is never, ok or failing by the latest recorded use', () => {
    expect(healthState(null, null)).toBe('never');
    expect(healthState(t1, null)).toBe('ok');
    expect(healthState(null, t1)).toBe('failing');
    expect(healthState(t2, t1)).toBe('ok');
    expect(healthState(t1, t2)).toBe('failing');
  });
});

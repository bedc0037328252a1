import { describe, expect, it } from 'vitest';
import { inviteLink, inviteTokenFrom, parseRoute } from './router.ts';

describe('router', () => {
  it('parses the routes', () => {
    expect(parseRoute('/')).toEqual({ name: 'overview' });
    expect(parseRoute('/admin')).toEqual({ name: 'admin' });
    expect(parseRoute('/nope')).toEqual({ name: 'not-found' });
  });

  it('reads an invitation token from the fragment, and builds the link back', () => {
    const token = 'inv_' + 'a'.repeat(32) + '_' + 'B'.repeat(43);
    const link = inviteLink('https://steward.example.com/', token);
    expect(link).toBe(`https://steward.example.com/#/invite/${token}`);
    expect(inviteTokenFrom(new URL(link).hash)).toBe(token);
    expect(inviteTokenFrom('')).toBeUndefined();
    expect(inviteTokenFrom('#/invite/')).toBeUndefined();
    expect(inviteTokenFrom('#/invite/abc<script>')).toBeUndefined();
    expect(inviteTokenFrom('#/other/abc')).toBeUndefined();
  });
});

import { describe, expect, it } from 'vitest';
import { ScimError } from './scim-error.ts';
import { parseFilter } from './scim-filter.ts';

const ATTRS = ['userName', 'externalId', 'displayName', 'emails.value', 'active'];
const dana = {
  userName: 'dana@corp.example',
  externalId: 'ext-1',
  displayName: 'Dana Scully',
  emails: [{ value: 'dana@corp.example' }, { value: 'd@home.example' }],
  active: true,
};

const matches = (filter: string) => parseFilter(filter, ATTRS)!(dana);

describe('SCIM filters', () => {
  it('compares case-insensitively, with eq ne co sw ew pr', () => {
    expect(matches('userName eq "DANA@corp.example"')).toBe(true);
    expect(matches('USERNAME Eq "dana@corp.example"')).toBe(true);
    expect(matches('userName eq "other@corp.example"')).toBe(false);
    expect(matches('externalId ne "ext-2"')).toBe(true);
    expect(matches('displayName co "scul"')).toBe(true);
    expect(matches('displayName sw "dana"')).toBe(true);
    expect(matches('displayName ew "scully"')).toBe(true);
    expect(matches('externalId pr')).toBe(true);
    expect(matches('emails.value eq "d@home.example"')).toBe(true);
    expect(matches('active eq true')).toBe(true);
    expect(matches('active eq false')).toBe(false);
    expect(matches('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "dana@corp.example"')).toBe(true);
  });

  it('joins with and (binding tighter) and or', () => {
    expect(matches('userName eq "dana@corp.example" and externalId eq "ext-1"')).toBe(true);
    expect(matches('userName eq "dana@corp.example" and externalId eq "ext-2"')).toBe(false);
    expect(matches('externalId eq "x" or userName eq "dana@corp.example" and active eq true')).toBe(true);
    expect(matches('externalId eq "x" or userName eq "nobody" and active eq true')).toBe(false);
  });

  it('reads escaped quotes in values', () => {
    expect(parseFilter('displayName eq "say \\"hi\\""', ATTRS)!({ displayName: 'say "hi"' })).toBe(true);
  });

  it('has no filter for an empty one, and refuses what it cannot read (never match-all)', () => {
    expect(parseFilter(undefined, ATTRS)).toBeUndefined();
    expect(parseFilter('  ', ATTRS)).toBeUndefined();
    for (const bad of [
      'userName eq',
      'userName gt "a"',
      'password eq "x"',
      'userName eq dana',
      'userName eq "a" and',
      '(userName eq "a")',
      'userName eq "a" extra',
      '"x" eq "y"',
    ]) {
      expect(() => parseFilter(bad, ATTRS), bad).toThrow(ScimError);
      try {
        parseFilter(bad, ATTRS);
      } catch (e) {
        expect((e as ScimError).scimType).toBe('invalidFilter');
        expect((e as ScimError).status).toBe(400);
      }
    }
  });
});

import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { fenced, fileIn, parseFrontMatter, safeName, vaultDir, withFrontMatter } from './vault-files.ts';

describe('vault file names', () => {
  it('cannot leave their folder', () => {
    for (const hostile of [
      '../../etc/passwd',
      '..\\..\\x',
      '/abs',
      'a/b',
      '..',
      '.',
      '',
      '\u0000x',
      'a\nb',
      '\u202Eevil',
    ]) {
      const name = safeName(hostile);
      expect(name).not.toMatch(/[\\/]|^\.|\p{Cc}|\p{Cf}/u);
      expect(path.dirname(fileIn('/vault/Plans', `${name}.md`))).toBe('/vault/Plans');
    }
    expect(safeName('  Invoice: 42 / ACME  ')).toBe('Invoice 42 ACME');
    expect(() => fileIn('/vault/Plans', '../x.md')).toThrow();
    expect(() => fileIn('/vault/Plans', 'a/b.md')).toThrow();
    expect(() => vaultDir('/data', '../other')).toThrow();
    expect(vaultDir('/data', 'acme')).toBe('/data/tenants/acme/vault');
  });

  it('round-trips front matter, whatever the values hold', () => {
    const data = { title: '---\nstatus: approved\n', n: 3, list: ['a', 'b'], nested: { x: null } };
    const text = withFrontMatter(data, '# Body\n\n---\nnot front matter');
    const parsed = parseFrontMatter(text)!;
    expect(parsed.data).toEqual(data);
    expect(parsed.body).toBe('# Body\n\n---\nnot front matter\n');
    expect(parseFrontMatter('no front matter')).toBeNull();
    expect(parseFrontMatter('---\n- a list\n---\n')).toBeNull();
    expect(parseFrontMatter('---\n: : bad\n  yaml: [\n---\n')).toBeNull();
  });

  it('fences content that holds fences', () => {
    const block = fenced('```\nescape\n````', 'text');
    expect(block.startsWith('`````text\n')).toBe(true);
    expect(block.endsWith('\n`````')).toBe(true);
  });
});

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENVIRONMENT } from './config.ts';

const README = path.resolve(import.meta.dirname, '../../../README.md');

describe('README', () => {
  it('documents every environment variable the program reads', async () => {
    const text = await readFile(README, 'utf8');
    const missing = Object.keys(ENVIRONMENT).filter((name) => !text.includes('`' + name + '`'));
    expect(missing).toEqual([]);
  });
});

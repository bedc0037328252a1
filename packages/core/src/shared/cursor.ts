import { invalid } from '../errors/app-error.ts';

/** Opaque keyset cursors: base64url of a small JSON object. */
export function encodeCursor(value: Record<string, string | number>): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

export function decodeCursor<K extends string>(
  cursor: string | undefined,
  keys: K[],
): Record<K, string> | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as Record<string, unknown>;
    const out = {} as Record<K, string>;
    for (const k of keys) {
      const v = parsed[k];
      if (typeof v !== 'string' && typeof v !== 'number') throw new Error('bad');
      out[k] = String(v);
    }
    return out;
  } catch {
    throw invalid('querystring/cursor is not a cursor this API returned');
  }
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

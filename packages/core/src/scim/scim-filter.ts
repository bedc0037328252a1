import { ScimError } from './scim-error.ts';

/**
 * SCIM filters (RFC 7644 section 3.4.2.2), the subset provisioning clients send: comparisons
 * `attr eq|ne|co|sw|ew "value"`, `attr pr`, joined with `and` (and `or`, lower precedence).
 * Attribute names and string comparisons are case-insensitive (the attributes offered are all
 * caseExact=false). Unsupported syntax is an `invalidFilter` error, never a silent match-all.
 */

export type Filter = (resource: Record<string, unknown>) => boolean;

const TOKEN = /\s*(?:("(?:[^"\\]|\\.)*")|([A-Za-z][A-Za-z0-9_.:$-]*)|(\S))/y;

function tokens(text: string): string[] {
  const out: string[] = [];
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < text.length) {
    const start = TOKEN.lastIndex;
    const m = TOKEN.exec(text);
    if (!m) {
      if (text.slice(start).trim() === '') break;
      throw new ScimError(400, 'the filter could not be read', 'invalidFilter');
    }
    if (m[3]) throw new ScimError(400, `the filter has an unexpected "${m[3]}"`, 'invalidFilter');
    out.push(m[1] ?? m[2]!);
  }
  return out;
}

function valueOf(resource: Record<string, unknown>, path: string): unknown[] {
  let current: unknown[] = [resource];
  for (const part of path.split('.')) {
    const next: unknown[] = [];
    for (const c of current) {
      if (Array.isArray(c)) {
        for (const item of c) if (item && typeof item === 'object') next.push(lookup(item, part));
      } else if (c && typeof c === 'object') next.push(lookup(c, part));
    }
    current = next.flat().filter((v) => v !== undefined && v !== null);
  }
  return current;
}

function lookup(obj: object, key: string): unknown {
  const found = Object.keys(obj).find((k) => k.toLowerCase() === key.toLowerCase());
  return found === undefined ? undefined : (obj as Record<string, unknown>)[found];
}

function compare(op: string, actual: unknown, expected: string | boolean): boolean {
  if (typeof expected === 'boolean') return op === 'eq' ? actual === expected : actual !== expected;
  const a = String(actual).toLowerCase();
  const e = expected.toLowerCase();
  switch (op) {
    case 'eq':
      return a === e;
    case 'ne':
      return a !== e;
    case 'co':
      return a.includes(e);
    case 'sw':
      return a.startsWith(e);
    case 'ew':
      return a.endsWith(e);
    default:
      return false;
  }
}

/** A parsed filter: comparisons (attribute path without the schema URN), joined by and/or. */
export type FilterNode =
  | { kind: 'or' | 'and'; parts: FilterNode[] }
  | { kind: 'cmp'; path: string; op: 'eq' | 'ne' | 'co' | 'sw' | 'ew'; value: string | boolean }
  | { kind: 'pr'; path: string };

/**
 * Parse a filter over the given attributes. Attribute paths come back as spelled in `attributes`
 * (so callers can map them to columns). Anything else is an `invalidFilter` error.
 */
export function parseFilterAst(
  text: string | undefined,
  attributes: readonly string[],
): FilterNode | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  if (text.length > 1000) throw new ScimError(400, 'the filter is too long', 'invalidFilter');
  const list = tokens(text);
  let i = 0;
  const known = new Map(attributes.map((a) => [a.toLowerCase(), a]));

  function comparison(): FilterNode {
    const attr = list[i++];
    if (!attr || attr.startsWith('"'))
      throw new ScimError(400, 'the filter needs an attribute', 'invalidFilter');
    const spelled = attr.replace(/^urn:ietf:params:scim:schemas:core:2\.0:(User|Group):/i, '');
    const path = known.get(spelled.toLowerCase());
    if (!path) throw new ScimError(400, `filtering on "${attr}" is not supported`, 'invalidFilter');
    const op = (list[i++] ?? '').toLowerCase();
    if (op === 'pr') return { kind: 'pr', path };
    if (op !== 'eq' && op !== 'ne' && op !== 'co' && op !== 'sw' && op !== 'ew')
      throw new ScimError(400, `the filter operator "${op}" is not supported`, 'invalidFilter');
    const raw = list[i++];
    let value: string | boolean;
    if (raw?.startsWith('"')) {
      try {
        value = JSON.parse(raw) as string;
      } catch {
        throw new ScimError(400, 'the filter has a malformed string', 'invalidFilter');
      }
    } else if (raw === 'true' || raw === 'false') value = raw === 'true';
    else throw new ScimError(400, 'the filter value must be a quoted string or a boolean', 'invalidFilter');
    return { kind: 'cmp', path, op, value };
  }

  function conjunction(): FilterNode {
    const parts = [comparison()];
    while (list[i]?.toLowerCase() === 'and') {
      i++;
      parts.push(comparison());
    }
    return parts.length === 1 ? parts[0]! : { kind: 'and', parts };
  }

  const alternatives = [conjunction()];
  while (list[i]?.toLowerCase() === 'or') {
    i++;
    alternatives.push(conjunction());
  }
  if (i !== list.length) throw new ScimError(400, 'the filter has trailing input', 'invalidFilter');
  return alternatives.length === 1 ? alternatives[0]! : { kind: 'or', parts: alternatives };
}

/** A filter as a predicate over SCIM resources (in memory; the list endpoints filter in SQL). */
export function parseFilter(text: string | undefined, attributes: readonly string[]): Filter | undefined {
  const ast = parseFilterAst(text, attributes);
  return ast ? predicate(ast) : undefined;
}

function predicate(node: FilterNode): Filter {
  switch (node.kind) {
    case 'or': {
      const parts = node.parts.map(predicate);
      return (r) => parts.some((p) => p(r));
    }
    case 'and': {
      const parts = node.parts.map(predicate);
      return (r) => parts.every((p) => p(r));
    }
    case 'pr':
      return (r) => valueOf(r, node.path).length > 0;
    case 'cmp':
      return (r) => {
        const values = valueOf(r, node.path);
        if (node.op === 'ne') return values.every((v) => compare('ne', v, node.value));
        return values.some((v) => compare(node.op, v, node.value));
      };
  }
}

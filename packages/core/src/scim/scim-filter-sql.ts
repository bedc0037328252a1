import type { Tx } from '@steward/db/database';
import type { FilterNode } from './scim-filter.ts';

/** A SQL fragment of postgres.js (what a tagged `tx\`...\`` returns). */
type Fragment = ReturnType<Tx['unsafe']> | ReturnType<Tx>;

/**
 * How an attribute is found in SQL: a single-valued text (or boolean) column expression, or a
 * multi-valued one given as a function that wraps a condition on its value (`exists (...)`).
 */
export type ColumnMap = Record<
  string,
  | { kind: 'text'; sql: Fragment }
  | { kind: 'boolean'; sql: Fragment }
  | { kind: 'multi'; any: (condition: (value: Fragment) => Fragment) => Fragment }
>;

/**
 * A parsed SCIM filter as a WHERE condition, with the same meaning as the in-memory predicate of
 * scim-filter.ts: string comparisons are case-insensitive, `ne` on a multi-valued attribute means
 * no value equals, an absent value matches `ne` and `pr` is false for it. Values are parameters.
 */
export function filterSql(tx: Tx, node: FilterNode, columns: ColumnMap): Fragment {
  switch (node.kind) {
    case 'or':
    case 'and': {
      const joiner = node.kind === 'or' ? tx`or` : tx`and`;
      const parts = node.parts.map((p) => filterSql(tx, p, columns));
      return parts.slice(1).reduce((acc, p) => tx`${acc} ${joiner} (${p})`, tx`(${parts[0]!})`);
    }
    case 'pr': {
      const col = columns[node.path]!;
      if (col.kind === 'multi') return col.any(() => tx`true`);
      return tx`(${col.sql}) is not null`;
    }
    case 'cmp': {
      const col = columns[node.path]!;
      if (col.kind === 'multi') {
        if (node.op === 'ne') return tx`not ${col.any((v) => compare(tx, 'eq', v, node.value))}`;
        return col.any((v) => compare(tx, node.op, v, node.value));
      }
      const value = col.kind === 'boolean' ? tx`(${col.sql})::text` : col.sql;
      if (typeof node.value === 'boolean') {
        if (col.kind !== 'boolean') return node.op === 'ne' ? tx`true` : tx`false`;
        return node.op === 'ne'
          ? tx`(${col.sql}) is distinct from ${node.value}`
          : node.op === 'eq'
            ? tx`coalesce((${col.sql}) = ${node.value}, false)`
            : tx`false`;
      }
      if (node.op === 'ne') return tx`(${value} is null or ${compare(tx, 'ne', value, node.value)})`;
      return tx`coalesce(${compare(tx, node.op, value, node.value)}, false)`;
    }
  }
}

function compare(tx: Tx, op: string, column: Fragment, value: string | boolean): Fragment {
  if (typeof value === 'boolean') return op === 'ne' ? tx`true` : tx`false`;
  const v = value.toLowerCase();
  switch (op) {
    case 'eq':
      return tx`lower(${column}) = ${v}`;
    case 'ne':
      return tx`lower(${column}) <> ${v}`;
    case 'co':
      return tx`strpos(lower(${column}), ${v}) > 0`;
    case 'sw':
      return tx`starts_with(lower(${column}), ${v})`;
    case 'ew':
      return tx`right(lower(${column}), ${v.length}) = ${v}`;
    default:
      return tx`false`;
  }
}

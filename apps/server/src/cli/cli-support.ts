import { InvalidArgumentError, type Command } from 'commander';
import type { TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { invalid } from '@steward/core/errors/app-error';
import type { Actor } from '@steward/core/resources';
import { getTenantBySlug, type Tenant } from '@steward/core/tenants/tenant-service';
import { isUuid } from '@steward/db/database';
import type { Runtime } from '../runtime.ts';
import type { Config } from '../config.ts';

/** What the entry point (cli.ts) lends each command group. */
export interface CliContext {
  /** Open the runtime against the configured database, run, close. */
  withRuntime<T>(cmd: Command, fn: (rt: Runtime) => Promise<T>): Promise<T>;
  /** `--json`: the object as one line of JSON; otherwise the human text. */
  print(cmd: Command, json: unknown, human: string): void;
  /** The validated configuration (environment and global options). */
  config?: (cmd: Command) => Config;
}

/** The actor of changes made from the command line without acting as a member. */
export const CLI_ACTOR: Actor = { type: 'system', label: 'steward cli' };

export const tenantOption = (c: Command) => c.requiredOption('--tenant <slug>', 'the tenant (its slug)');

export async function tenantOf(rt: Runtime, slug: string): Promise<Tenant> {
  return getTenantBySlug(rt.res, slug);
}

/** An id given on the command line: a uuid, or a clear error before anything reaches the database. */
export function uuidArg(value: string, what: string): string {
  if (!isUuid(value)) throw invalid(`${what} must be an id (a uuid), got "${String(value).slice(0, 80)}"`);
  return value;
}

/** Commander parser for --limit. */
export function limitOption(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 200)
    throw new InvalidArgumentError('a whole number from 1 to 200');
  return n;
}

/** Check a value against a TypeBox schema; the first problems name the command-line flag. */
export function checkSchema<T>(schema: TSchema, value: unknown, label: (path: string) => string): T {
  const compiled = TypeCompiler.Compile(schema);
  if (compiled.Check(value)) return value as T;
  const problems = [...compiled.Errors(value)]
    .slice(0, 5)
    .map((e) => `${label(e.path)}: ${e.message.toLowerCase()}`);
  throw invalid([...new Set(problems)].join('; '));
}

/** Parse a JSON option or file; `what` names it in the error. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw invalid(`${what} is not valid JSON (${(error as Error).message})`);
  }
}

function cell(value: unknown, max: number): string {
  const s = (value === null || value === undefined ? '-' : String(value)).replace(/\s+/g, ' ');
  return s.length > max ? s.slice(0, max - 1) + '…' : s;
}

/**
 * A compact text table. Each column has a header and a maximum width; the last column is not
 * padded. An empty list prints `empty` instead.
 */
export function table(
  columns: { header: string; max?: number }[],
  rows: unknown[][],
  empty = 'nothing to show',
): string {
  if (!rows.length) return empty;
  const cells = rows.map((r) => columns.map((c, i) => cell(r[i], c.max ?? 60)));
  const widths = columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) =>
    r
      .map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n');
}

/** A page of a list in human form: the table, then how to get the next page. */
export function pageText(text: string, nextCursor: string | null): string {
  return nextCursor ? `${text}\n(more: add --cursor ${nextCursor})` : text;
}

/** A timestamp, shortened for tables (UTC, to the second). */
export function when(iso: string | null | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-';
}

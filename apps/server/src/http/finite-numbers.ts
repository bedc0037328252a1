import type { FastifyInstance } from 'fastify';
import { invalid } from '@steward/core/errors/app-error';

/** The path of the first non-finite number in a parsed value, or undefined. */
export function nonFinitePath(value: unknown, path: string): string | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : path;
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, v] of Object.entries(value)) {
    const found = nonFinitePath(v, `${path}/${key}`);
    if (found) return found;
  }
  return undefined;
}

/**
 * ajv's type coercion turns a string such as "1e309" into Infinity *after* its integer and range
 * checks, so the value passes validation (ajv 8). JSON bodies cannot carry Infinity, but coerced
 * query strings, path parameters and form fields can: refuse them here, after validation, with the
 * same 400 a failed schema gives.
 */
export function installFiniteNumbers(app: FastifyInstance): void {
  app.addHook('preHandler', async (request) => {
    const path =
      nonFinitePath(request.query, 'querystring') ??
      nonFinitePath(request.params, 'params') ??
      nonFinitePath(request.body, 'body');
    if (path) throw invalid(`${path} must be a finite number`);
  });
}

import { Type, type StringOptions, type TSchema } from '@sinclair/typebox';

export const ErrorResponse = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable, SCREAMING_SNAKE code' }),
      message: Type.String(),
      requestId: Type.String(),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { $id: 'ErrorResponse', description: 'Every error has this shape' },
);

export const errorRef = Type.Ref('ErrorResponse');

export const PageQuery = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const IdParams = Type.Object({ id: Type.String({ format: 'uuid' }) }, { additionalProperties: false });

export const Email = Type.String({ format: 'email', maxLength: 320 });
export const Password = Type.String({ minLength: 1, maxLength: 256 });

/**
 * A string or null, as `type: ['string', 'null']` (OpenAPI 3.1). Type.Union would give an `anyOf`,
 * which fast-json-stringify serializes by running a validator on every value: on a 50-item page
 * that was about 40% of the serialization time (bench/).
 */
export function NullableString(options: StringOptions = {}) {
  return Type.Unsafe<string | null>({ ...options, type: ['string', 'null'] });
}

export function Page<T extends TSchema>(item: T) {
  return Type.Object({ items: Type.Array(item), nextCursor: NullableString() });
}

/** Standard error responses a route may give, for the OpenAPI document. */
export function errors(...codes: number[]) {
  return Object.fromEntries(codes.map((c) => [c, errorRef]));
}

export const Ok = Type.Object({ ok: Type.Boolean() });

/** How a connection or MCP server was last used (core's UseHealth). */
export const UseHealthFields = {
  state: Type.Union([Type.Literal('ok'), Type.Literal('failing'), Type.Literal('never')], {
    description:
      'ok: the latest recorded use (by a tool, a watcher or a tool listing) succeeded; failing: it failed; never: no use recorded',
  }),
  lastSuccessAt: NullableString({ format: 'date-time' }),
  lastErrorAt: NullableString({ format: 'date-time' }),
  lastError: NullableString({
    description: 'the latest failure: a stable code and a short message, secrets scrubbed',
  }),
};
export const UseHealthSchema = Type.Object(UseHealthFields);

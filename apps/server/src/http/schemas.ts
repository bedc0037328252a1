import { Type, type TSchema } from '@sinclair/typebox';

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

export function Page<T extends TSchema>(item: T) {
  return Type.Object({ items: Type.Array(item), nextCursor: Type.Union([Type.String(), Type.Null()]) });
}

/** Standard error responses a route may give, for the OpenAPI document. */
export function errors(...codes: number[]) {
  return Object.fromEntries(codes.map((c) => [c, errorRef]));
}

export const Ok = Type.Object({ ok: Type.Boolean() });

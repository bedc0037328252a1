import fc from 'fast-check';

/** A JSON schema as found in the OpenAPI document (TypeBox output). */
export type JsonSchema = Record<string, unknown>;

const MAX_STRING = 40;

function stringArbitrary(s: JsonSchema): fc.Arbitrary<string> {
  const minLength = typeof s.minLength === 'number' ? s.minLength : 0;
  const maxLength = typeof s.maxLength === 'number' ? s.maxLength : Math.max(minLength, MAX_STRING);
  const fits = (v: string) => v.length >= minLength && v.length <= maxLength;
  if (s.format === 'uuid') return fc.uuid();
  if (s.format === 'date-time') return fc.date({ noInvalidDate: true }).map((d) => d.toISOString());
  if (s.format === 'email') return fc.emailAddress().filter(fits);
  if (typeof s.pattern === 'string') {
    try {
      return fc.stringMatching(new RegExp(s.pattern)).filter(fits);
    } catch {
      /* a pattern fast-check cannot invert: plain strings below */
    }
  }
  return fc.string({ minLength, maxLength: Math.min(maxLength, Math.max(minLength, MAX_STRING)) });
}

function objectArbitrary(s: JsonSchema): fc.Arbitrary<Record<string, unknown>> {
  const properties = (s.properties ?? {}) as Record<string, JsonSchema>;
  const required = new Set((s.required ?? []) as string[]);
  const fields: Record<string, fc.Arbitrary<unknown>> = {};
  for (const [k, v] of Object.entries(properties)) fields[k] = valid(v);
  const record = fc.record(fields, { requiredKeys: Object.keys(fields).filter((k) => required.has(k)) });
  const patterns = s.patternProperties as Record<string, JsonSchema> | undefined;
  const additional = s.additionalProperties;
  if (patterns && Object.keys(patterns).length) {
    const [pattern, value] = Object.entries(patterns)[0]!;
    const maxKeys = typeof s.maxProperties === 'number' ? Math.min(s.maxProperties, 4) : 4;
    return fc.dictionary(stringArbitrary({ pattern, maxLength: 30 }), valid(value), { maxKeys });
  }
  if (additional && typeof additional === 'object' && !Object.keys(fields).length) {
    return fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), valid(additional as JsonSchema), {
      maxKeys: 4,
    });
  }
  return record as fc.Arbitrary<Record<string, unknown>>;
}

/** Values that satisfy the schema (as far as fast-check can invert it). */
export function valid(s: JsonSchema): fc.Arbitrary<unknown> {
  if ('const' in s) return fc.constant(s.const);
  if (Array.isArray(s.enum)) return fc.constantFrom(...(s.enum as unknown[]));
  for (const key of ['anyOf', 'oneOf'] as const) {
    if (Array.isArray(s[key])) return fc.oneof(...(s[key] as JsonSchema[]).map(valid));
  }
  if (Array.isArray(s.allOf)) {
    const merged = (s.allOf as JsonSchema[]).reduce<JsonSchema>(
      (acc, part) => ({
        ...acc,
        ...part,
        properties: { ...(acc.properties as object), ...(part.properties as object) },
        required: [...((acc.required ?? []) as string[]), ...((part.required ?? []) as string[])],
      }),
      {},
    );
    return valid({ ...merged, type: 'object' });
  }
  if (Array.isArray(s.type)) return fc.oneof(...(s.type as string[]).map((type) => valid({ ...s, type })));
  switch (s.type) {
    case 'string':
      return stringArbitrary(s);
    case 'integer':
      return fc.integer({
        min: typeof s.minimum === 'number' ? s.minimum : -1_000_000,
        max: typeof s.maximum === 'number' ? s.maximum : 1_000_000,
      });
    case 'number':
      return fc.double({
        noNaN: true,
        noDefaultInfinity: true,
        min: typeof s.minimum === 'number' ? s.minimum : -1e9,
        max: typeof s.maximum === 'number' ? s.maximum : 1e9,
      });
    case 'boolean':
      return fc.boolean();
    case 'null':
      return fc.constant(null);
    case 'array': {
      const minLength = typeof s.minItems === 'number' ? s.minItems : 0;
      const maxLength = Math.min(typeof s.maxItems === 'number' ? s.maxItems : 4, Math.max(minLength, 4));
      return fc.array(s.items ? valid(s.items as JsonSchema) : fc.jsonValue({ maxDepth: 1 }), {
        minLength,
        maxLength,
      });
    }
    case 'object':
      return objectArbitrary(s);
    default:
      if (s.properties) return objectArbitrary(s);
      return fc.jsonValue({ maxDepth: 2 });
  }
}

/** Valid values, and invalid variants: anything JSON, a field replaced by junk, an unknown field. */
export function validOrNot(s: JsonSchema): fc.Arbitrary<unknown> {
  const junk = fc.oneof(
    fc.jsonValue({ maxDepth: 2 }),
    fc.string({ maxLength: 300 }),
    fc.constantFrom('', '\u0000', '-1', '1e309', 'null', '💥', '../../etc/passwd', "' or 1=1 --"),
    fc.integer(),
    fc.double(),
  );
  const mutated = valid(s).chain((v) => {
    if (!v || typeof v !== 'object' || Array.isArray(v)) return junk;
    const keys = Object.keys(v);
    return fc.oneof(
      junk.map((j) => ({ ...v, extraField: j })),
      keys.length ? fc.tuple(fc.constantFrom(...keys), junk).map(([k, j]) => ({ ...v, [k]: j })) : junk,
    );
  });
  return fc.oneof(
    { weight: 3, arbitrary: valid(s) },
    { weight: 1, arbitrary: junk },
    { weight: 2, arbitrary: mutated },
  );
}

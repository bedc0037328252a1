import type { EventView } from './event-view.ts';

const PLACEHOLDER = /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)*)\s*\}\}/g;
const WHOLE = /^\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)*)\s*\}\}$/;

function lookup(view: EventView, path: string): unknown {
  const [root, ...rest] = path.split('.');
  let value: unknown =
    root === 'event' ? view : root === 'extracted' ? view.extracted : root === 'data' ? view.data : undefined;
  for (const key of rest) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/**
 * Fill `{{event.subject}}`, `{{extracted.amount}}`, `{{data.x}}` placeholders. A string that is only
 * one placeholder takes the value as it is (a number stays a number); otherwise values are inserted
 * as text. Nothing is evaluated: event text can only ever become argument values.
 */
export function fillTemplate(value: unknown, view: EventView): unknown {
  if (typeof value === 'string') {
    const whole = WHOLE.exec(value);
    if (whole) return lookup(view, whole[1]!) ?? '';
    return value.replace(PLACEHOLDER, (_m, path: string) => {
      const v = lookup(view, path);
      if (v === undefined || v === null) return '';
      return typeof v === 'object' ? JSON.stringify(v) : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => fillTemplate(v, view));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillTemplate(v, view)]));
  }
  return value;
}

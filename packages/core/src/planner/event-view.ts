/** What a planner sees of an event: its fields plus values extracted from the text. */
export interface EventView {
  source: string;
  type: string;
  externalId: string;
  from: string;
  subject: string;
  body: string;
  data: Record<string, unknown>;
  extracted: { amount?: number; currency?: string; emails: string[] };
}

// Bounded repetitions and lookbehinds keep matching linear: with unbounded `\d+` or `[...]+@`, a
// long run of digits or letters in an event body took quadratic time (about 30 s for 100 kB).
const NUMBER = String.raw`\d{1,3}(?:,\d{3}){1,6}(?:\.\d{1,6})?|\d{1,15}(?:\.\d{1,6})?`;
const AMOUNT = new RegExp(
  String.raw`(?:([$€£])\s?|\b(USD|EUR|GBP)\s?)(${NUMBER})(?!\d)|(?<![\d.,])(${NUMBER})\s?(USD|EUR|GBP)\b`,
  'i',
);
const SYMBOL: Record<string, string> = { $: 'USD', '€': 'EUR', '£': 'GBP' };
const EMAIL = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}/g;

/** Pull an amount and e-mail addresses out of untrusted text (bounded input). */
export function extract(text: string, data: Record<string, unknown>): EventView['extracted'] {
  const t = text.slice(0, 100_000);
  const out: EventView['extracted'] = {
    emails: [...new Set((t.match(EMAIL) ?? []).map((e) => e.toLowerCase()))].slice(0, 50),
  };
  if (typeof data.amount === 'number' && Number.isFinite(data.amount)) {
    out.amount = data.amount;
    if (typeof data.currency === 'string') out.currency = data.currency.toUpperCase();
    return out;
  }
  const m = AMOUNT.exec(t);
  if (m) {
    const digits = (m[3] ?? m[4] ?? '').replace(/,/g, '');
    const n = Number(digits);
    if (Number.isFinite(n)) {
      out.amount = n;
      const cur = m[1] ? SYMBOL[m[1]] : (m[2] ?? m[5])?.toUpperCase();
      if (cur) out.currency = cur;
    }
  }
  return out;
}

export function eventView(e: {
  source: string;
  type: string;
  externalId?: string | null;
  from?: string | null;
  subject?: string | null;
  body?: string | null;
  data?: Record<string, unknown> | null;
}): EventView {
  const data = e.data ?? {};
  return {
    source: e.source,
    type: e.type,
    externalId: e.externalId ?? '',
    from: e.from ?? '',
    subject: e.subject ?? '',
    body: e.body ?? '',
    data,
    extracted: extract(`${e.subject ?? ''}\n${e.body ?? ''}`, data),
  };
}

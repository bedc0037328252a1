/** What one approved action will do, in words and fields a person can check at a glance. */
export interface ActionView {
  key?: string | undefined;
  tool: string;
  recipients: string[];
  amounts: string[];
  fields: { name: string; value: string }[];
}

const RECIPIENT_KEYS = new Set(['to', 'cc', 'bcc', 'recipient', 'recipients', 'email', 'phone']);
const AMOUNT_KEYS = new Set(['amount', 'total', 'price', 'sum', 'value']);

function text(v: unknown): string {
  if (v === null || v === undefined) return '—';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return JSON.stringify(v, null, 2);
}

function list(v: unknown): string[] {
  if (Array.isArray(v)) return v.flatMap(list);
  if (typeof v === 'string') return v.split(/[,;]\s*/).filter(Boolean);
  if (v && typeof v === 'object' && 'email' in v) return [String((v as { email: unknown }).email)];
  return v === undefined || v === null ? [] : [text(v)];
}

function one(tool: string, args: Record<string, unknown>, key?: string): ActionView {
  const view: ActionView = { key, tool, recipients: [], amounts: [], fields: [] };
  const currency = typeof args.currency === 'string' ? ` ${args.currency}` : '';
  for (const [name, value] of Object.entries(args)) {
    if (RECIPIENT_KEYS.has(name)) view.recipients.push(...list(value));
    else if (AMOUNT_KEYS.has(name) && (typeof value === 'number' || typeof value === 'string'))
      view.amounts.push(`${value}${currency}`);
    else if (name !== 'currency' || !view.amounts.length) view.fields.push({ name, value: text(value) });
  }
  if (currency) view.fields = view.fields.filter((f) => f.name !== 'currency' || !view.amounts.length);
  return view;
}

/** A step approval's {tool,args}, or a plan approval's {steps:[{key,tool,args}]}, as views. */
export function describeAction(action: Record<string, unknown>): ActionView[] {
  if (Array.isArray(action.steps)) {
    return (action.steps as { key?: string; tool?: string; args?: Record<string, unknown> }[]).map((s) =>
      one(String(s.tool ?? '?'), s.args ?? {}, s.key),
    );
  }
  return [one(String(action.tool ?? '?'), (action.args as Record<string, unknown>) ?? {})];
}

/** A one-line summary ("email.send to a@b.c, 120 EUR"). */
export function actionLabel(action: Record<string, unknown>): string {
  return describeAction(action)
    .map((v) =>
      [v.tool, v.recipients.length ? `to ${v.recipients.join(', ')}` : '', v.amounts.join(', ')]
        .filter(Boolean)
        .join(' '),
    )
    .join('; ');
}

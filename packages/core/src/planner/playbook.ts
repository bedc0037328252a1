import { Type, type Static } from '@sinclair/typebox';
import type { EventView } from './event-view.ts';
import type { PlanDraft } from './plan-draft.ts';
import { fillTemplate } from './template.ts';

const TextMatch = Type.Object(
  {
    contains: Type.Optional(Type.String({ maxLength: 500 })),
    equals: Type.Optional(Type.String({ maxLength: 500 })),
    endsWith: Type.Optional(Type.String({ maxLength: 500 })),
    matches: Type.Optional(
      Type.String({ maxLength: 200, description: 'a regular expression (case-insensitive)' }),
    ),
  },
  { additionalProperties: false },
);

const Compare = Type.Object(
  {
    gt: Type.Optional(Type.Number()),
    gte: Type.Optional(Type.Number()),
    lt: Type.Optional(Type.Number()),
    lte: Type.Optional(Type.Number()),
  },
  { additionalProperties: false },
);

export const PlaybookConditions = Type.Object(
  {
    source: Type.Optional(Type.Array(Type.String({ maxLength: 50 }), { maxItems: 20 })),
    type: Type.Optional(Type.Array(Type.String({ maxLength: 100 }), { maxItems: 20 })),
    from: Type.Optional(TextMatch),
    subject: Type.Optional(TextMatch),
    body: Type.Optional(TextMatch),
    amount: Type.Optional(Compare),
  },
  { additionalProperties: false },
);

export const PlaybookStep = Type.Object(
  {
    key: Type.String({ pattern: '^[a-z][a-z0-9_-]{0,39}$' }),
    tool: Type.String({ maxLength: 100 }),
    args: Type.Record(Type.String(), Type.Unknown()),
    dependsOn: Type.Optional(Type.Array(Type.String(), { maxItems: 20 })),
    risk: Type.Optional(
      Type.Union(
        [Type.Literal('low'), Type.Literal('medium'), Type.Literal('high'), Type.Literal('critical')],
        {
          description: "raises the tool's own risk; can never lower it",
        },
      ),
    ),
    compensation: Type.Optional(
      Type.Object(
        { tool: Type.String({ maxLength: 100 }), args: Type.Record(Type.String(), Type.Unknown()) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export type PlaybookConditions = Static<typeof PlaybookConditions>;
export type PlaybookStep = Static<typeof PlaybookStep>;

export interface Playbook {
  id: string;
  name: string;
  enabled: boolean;
  priority: number;
  when: PlaybookConditions;
  steps: PlaybookStep[];
}

function textMatches(m: Static<typeof TextMatch> | undefined, value: string): boolean {
  if (!m) return true;
  const v = value.toLowerCase();
  if (m.contains !== undefined && !v.includes(m.contains.toLowerCase())) return false;
  if (m.equals !== undefined && v !== m.equals.toLowerCase()) return false;
  if (m.endsWith !== undefined && !v.endsWith(m.endsWith.toLowerCase())) return false;
  if (m.matches !== undefined) {
    let re: RegExp;
    try {
      re = new RegExp(m.matches, 'i');
    } catch {
      return false;
    }
    if (!re.test(value.slice(0, 20_000))) return false;
  }
  return true;
}

export function conditionsMatch(when: PlaybookConditions, view: EventView): boolean {
  if (when.source && !when.source.includes(view.source)) return false;
  if (when.type && !when.type.includes(view.type)) return false;
  if (!textMatches(when.from, view.from)) return false;
  if (!textMatches(when.subject, view.subject)) return false;
  if (!textMatches(when.body, view.body)) return false;
  if (when.amount) {
    const a = view.extracted.amount;
    if (a === undefined) return false;
    const c = when.amount;
    if (c.gt !== undefined && !(a > c.gt)) return false;
    if (c.gte !== undefined && !(a >= c.gte)) return false;
    if (c.lt !== undefined && !(a < c.lt)) return false;
    if (c.lte !== undefined && !(a <= c.lte)) return false;
  }
  return true;
}

/** The first enabled playbook (by priority, then name) whose conditions match, as a plan draft. */
export function planFromPlaybooks(
  playbooks: Playbook[],
  view: EventView,
): { playbook: Playbook; draft: PlanDraft } | undefined {
  const ordered = playbooks
    .filter((p) => p.enabled)
    .sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name));
  for (const playbook of ordered) {
    if (!conditionsMatch(playbook.when, view)) continue;
    return {
      playbook,
      draft: {
        summary: `Playbook "${playbook.name}"`,
        steps: playbook.steps.map((s) => ({
          key: s.key,
          tool: s.tool,
          args: fillTemplate(s.args, view) as Record<string, unknown>,
          dependsOn: s.dependsOn ?? [],
          risk: s.risk,
          compensation: s.compensation
            ? {
                tool: s.compensation.tool,
                args: fillTemplate(s.compensation.args, view) as Record<string, unknown>,
              }
            : undefined,
        })),
      },
    };
  }
  return undefined;
}

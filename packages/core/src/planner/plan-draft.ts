import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { TSchema } from '@sinclair/typebox';
import type { RiskLevel, Tool } from '../tools/tool.ts';

/** A plan as a planner proposes it: untrusted until validate() accepts it. */
export interface PlanDraft {
  summary: string;
  steps: DraftStep[];
}

export interface DraftStep {
  key: string;
  tool: string;
  args: Record<string, unknown>;
  dependsOn: string[];
  risk?: RiskLevel | undefined;
  compensation?: { tool: string; args: Record<string, unknown> } | undefined;
}

const compiled = new WeakMap<TSchema, ReturnType<typeof TypeCompiler.Compile>>();

function checker(schema: TSchema) {
  let c = compiled.get(schema);
  if (!c) {
    c = TypeCompiler.Compile(schema);
    compiled.set(schema, c);
  }
  return c;
}

export const MAX_STEPS = 25;

/**
 * Validate a draft against the tools the tenant allows: every tool known and allowed, arguments
 * matching the tool's schema, unique keys, dependencies that exist and form no cycle. Returns the
 * problems (empty when the plan is acceptable).
 */
export function validateDraft(draft: PlanDraft, tools: ReadonlyMap<string, Tool>): string[] {
  const problems: string[] = [];
  if (!draft.steps.length) problems.push('the plan has no steps');
  if (draft.steps.length > MAX_STEPS) problems.push(`the plan has more than ${MAX_STEPS} steps`);
  const keys = new Set<string>();
  for (const step of draft.steps) {
    if (keys.has(step.key)) problems.push(`step key "${step.key}" is used twice`);
    keys.add(step.key);
  }
  for (const step of draft.steps) {
    for (const [label, call] of [
      ['', { tool: step.tool, args: step.args }],
      ...(step.compensation ? [[' compensation', step.compensation] as const] : []),
    ] as const) {
      const tool = tools.get(call.tool);
      if (!tool) {
        problems.push(`step "${step.key}"${label}: tool "${call.tool}" is not available to this tenant`);
        continue;
      }
      const c = checker(tool.args);
      if (!c.Check(call.args)) {
        const first = c.Errors(call.args).First();
        problems.push(
          `step "${step.key}"${label}: arguments for ${call.tool} are invalid: ${first?.path || '/'} ${first?.message ?? ''}`.trim(),
        );
      }
    }
    for (const dep of step.dependsOn) {
      if (!keys.has(dep)) problems.push(`step "${step.key}" depends on unknown step "${dep}"`);
      if (dep === step.key) problems.push(`step "${step.key}" depends on itself`);
    }
  }
  if (!problems.length && hasCycle(draft.steps)) problems.push('the step dependencies form a cycle');
  return problems;
}

function hasCycle(steps: DraftStep[]): boolean {
  const deps = new Map(steps.map((s) => [s.key, s.dependsOn]));
  const state = new Map<string, 1 | 2>();
  const visit = (k: string): boolean => {
    if (state.get(k) === 2) return false;
    if (state.get(k) === 1) return true;
    state.set(k, 1);
    for (const d of deps.get(k) ?? []) if (visit(d)) return true;
    state.set(k, 2);
    return false;
  };
  return steps.some((s) => visit(s.key));
}

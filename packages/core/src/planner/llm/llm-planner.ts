import { TypeCompiler } from '@sinclair/typebox/compiler';
import type { Tool } from '../../tools/tool.ts';
import type { EventView } from '../event-view.ts';
import { validateDraft, type PlanDraft } from '../plan-draft.ts';
import { LlmCallError, type LlmAdapter, type ModelUsage, type ToolTurn, type Turn } from './llm-adapter.ts';
import { eventPrompt, LlmPlan, PLAN_TOOL_NAME, planToolSchema, systemPrompt } from './plan-prompt.ts';

const planShape = TypeCompiler.Compile(LlmPlan);

/** Model calls per task: the first answer and one retry with the problems fed back. */
export const MAX_ATTEMPTS = 2;

export type LlmPlanning =
  { ok: true; draft: PlanDraft; usage: ModelUsage[] } | { ok: false; reason: string; usage: ModelUsage[] };

/** Check one answer: a call of propose_plan whose input has the plan's shape and passes validateDraft. */
export function checkAnswer(
  turn: ToolTurn,
  tools: ReadonlyMap<string, Tool>,
): { draft: PlanDraft; problems?: undefined } | { draft?: undefined; problems: string[] } {
  if (!turn.call) return { problems: [`no plan was proposed: call the ${PLAN_TOOL_NAME} tool`] };
  if (turn.call.error) return { problems: [`the ${PLAN_TOOL_NAME} input was unusable: ${turn.call.error}`] };
  const input = turn.call.input;
  if (!planShape.Check(input)) {
    const problems = [...planShape.Errors(input)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
    return { problems: problems.length ? problems : ['the plan does not have the required shape'] };
  }
  const draft: PlanDraft = {
    summary: input.summary,
    steps: input.steps.map((s) => ({
      key: s.key,
      tool: s.tool,
      args: s.args,
      dependsOn: s.dependsOn ?? [],
      risk: s.risk,
      compensation: s.compensation,
    })),
  };
  const problems = validateDraft(draft, tools);
  return problems.length ? { problems } : { draft };
}

function feedback(problems: string[]): string {
  return [
    'The plan was rejected:',
    ...problems.map((p) => `- ${p}`),
    `Call ${PLAN_TOOL_NAME} again with a corrected plan that uses only the listed tools and their argsSchema.`,
  ].join('\n');
}

/**
 * Ask the model for a plan for one event. Invalid output is retried once with the problems fed
 * back; after that (or when the provider fails) the result says why, for a human to pick up.
 * Runs no database work: callers must not hold a transaction across it.
 */
export async function planWithModel(input: {
  adapter: LlmAdapter;
  tools: ReadonlyMap<string, Tool>;
  view: EventView;
  handbook?: string | undefined;
  signal?: AbortSignal;
}): Promise<LlmPlanning> {
  const { adapter, tools } = input;
  const usage: ModelUsage[] = [];
  if (!tools.size) return { ok: false, reason: 'no tools are available to this tenant', usage };
  const system = systemPrompt(tools, input.handbook);
  const spec = {
    name: PLAN_TOOL_NAME,
    description: 'Propose the plan for the event: a summary and the steps, each calling one of the tools.',
    schema: planToolSchema(tools),
  };
  const turns: Turn[] = [{ role: 'user', text: eventPrompt(input.view) }];
  let problems: string[] = [];
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    let turn: ToolTurn;
    try {
      turn = await adapter.callTool({
        system,
        turns,
        tool: spec,
        ...(input.signal ? { signal: input.signal } : {}),
      });
    } catch (error) {
      if (!(error instanceof LlmCallError)) throw error;
      if (error.usage.inputTokens || error.usage.outputTokens) usage.push(error.usage);
      return { ok: false, reason: error.message, usage };
    }
    usage.push(turn.usage);
    const checked = checkAnswer(turn, tools);
    if (checked.draft) return { ok: true, draft: checked.draft, usage };
    problems = checked.problems;
    if (turn.call) {
      const callInput =
        turn.call.input && typeof turn.call.input === 'object' && !Array.isArray(turn.call.input)
          ? turn.call.input
          : {};
      turns.push({ role: 'assistant', text: turn.text, call: { id: turn.call.id, input: callInput } });
      turns.push({ role: 'tool_error', callId: turn.call.id, text: feedback(problems) });
    } else {
      turns.push({ role: 'assistant', text: turn.text || '(no answer)' });
      turns.push({ role: 'user', text: feedback(problems) });
    }
  }
  const reason = `the ${adapter.provider} planner proposed an invalid plan twice: ${problems.join('; ')}`;
  return { ok: false, reason: reason.length > 2000 ? `${reason.slice(0, 1997)}...` : reason, usage };
}

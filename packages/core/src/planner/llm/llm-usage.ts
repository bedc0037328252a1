import type { Tx } from '@steward/db/database';
import { invalid } from '../../errors/app-error.ts';
import type { Resources } from '../../resources.ts';
import type { ModelUsage } from './llm-adapter.ts';

/** Record the tokens of each model call, in the caller's tenant transaction. */
export async function recordUsage(
  tx: Tx,
  tenantId: string,
  entry: { taskId: string | null; provider: string; model: string; calls: ModelUsage[] },
): Promise<void> {
  for (const call of entry.calls) {
    await tx`
      insert into llm_usage (tenant_id, task_id, provider, model, input_tokens, output_tokens)
      values (${tenantId}, ${entry.taskId}, ${entry.provider}, ${entry.model.slice(0, 200)},
              ${Math.max(0, Math.round(call.inputTokens))}, ${Math.max(0, Math.round(call.outputTokens))})`;
  }
}

export interface UsageDay {
  day: string;
  provider: string;
  model: string;
  calls: number;
  inputTokens: number;
  outputTokens: number;
}

export interface UsageSummary {
  since: string;
  until: string;
  items: UsageDay[];
  totals: { calls: number; inputTokens: number; outputTokens: number };
}

const DAY_MS = 86_400_000;
export const MAX_RANGE_DAYS = 366;

/** Token usage per UTC day, provider and model, between since (default 30 days ago) and until (now). */
export async function usageSummary(
  res: Resources,
  tenantId: string,
  q: { since?: string | undefined; until?: string | undefined },
): Promise<UsageSummary> {
  const until = q.until ? new Date(q.until) : new Date();
  const since = q.since ? new Date(q.since) : new Date(until.getTime() - 30 * DAY_MS);
  if (Number.isNaN(since.getTime()) || Number.isNaN(until.getTime()))
    throw invalid('since and until must be date-times');
  if (since >= until) throw invalid('since must be before until');
  if (until.getTime() - since.getTime() > MAX_RANGE_DAYS * DAY_MS)
    throw invalid(`the range may span at most ${MAX_RANGE_DAYS} days`);
  const rows = await res.db.withTenant(
    tenantId,
    (tx) => tx<
      { day: string; provider: string; model: string; calls: string; input: string; output: string }[]
    >`
    select to_char(created_at at time zone 'UTC', 'YYYY-MM-DD') as day, provider, model,
           count(*) as calls, sum(input_tokens) as input, sum(output_tokens) as output
      from llm_usage
     where tenant_id = ${tenantId} and created_at >= ${since} and created_at < ${until}
     group by 1, 2, 3
     order by 1 desc, 2, 3`,
  );
  const items = rows.map((r) => ({
    day: r.day,
    provider: r.provider,
    model: r.model,
    calls: Number(r.calls),
    inputTokens: Number(r.input),
    outputTokens: Number(r.output),
  }));
  return {
    since: since.toISOString(),
    until: until.toISOString(),
    items,
    totals: items.reduce(
      (t, i) => ({
        calls: t.calls + i.calls,
        inputTokens: t.inputTokens + i.inputTokens,
        outputTokens: t.outputTokens + i.outputTokens,
      }),
      { calls: 0, inputTokens: 0, outputTokens: 0 },
    ),
  };
}

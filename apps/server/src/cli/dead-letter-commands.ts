import type { Command } from 'commander';
import { listDeadLetters, retryDeadLetter } from '@steward/core/executor/dead-letters';
import { getTask } from '@steward/core/tasks/task-service';
import {
  CLI_ACTOR,
  limitOption,
  pageText,
  table,
  tenantOf,
  tenantOption,
  uuidArg,
  when,
  type CliContext,
} from './cli-support.ts';

/** `steward dead-letter list|retry`. */
export function addDeadLetterCommands(program: Command, ctx: CliContext): void {
  const dead = program.command('dead-letter').description('steps that failed for good');

  tenantOption(dead.command('list'))
    .description('steps that failed for good (retries exhausted or not retryable), newest first')
    .option('--limit <n>', 'how many (1-200)', limitOption, 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(async (o: { tenant: string; limit: number; cursor?: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const page = await listDeadLetters(rt.res, t.id, o);
        ctx.print(
          cmd,
          page,
          pageText(
            table(
              [
                { header: 'STEP ID' },
                { header: 'TASK' },
                { header: 'STEP', max: 24 },
                { header: 'TOOL', max: 30 },
                { header: 'TRIES' },
                { header: 'FAILED' },
                { header: 'ERROR', max: 70 },
              ],
              page.items.map((s) => [
                s.id,
                s.taskId,
                s.key,
                s.tool,
                `${s.attempts}/${s.maxAttempts}`,
                when(s.finishedAt),
                s.error ? String(s.error.message ?? s.error.code ?? JSON.stringify(s.error)) : '-',
              ]),
              'no dead letters',
            ),
            page.nextCursor,
          ),
        );
      }),
    );

  tenantOption(dead.command('retry'))
    .description('run a dead step once more (with the same idempotency key); a running worker picks it up')
    .argument('<stepId>', 'the step id (from dead-letter list)')
    .action(async (stepId: string, o: { tenant: string }, cmd: Command) => {
      uuidArg(stepId, 'the step');
      await ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const taskId = await retryDeadLetter(rt.res, t.id, CLI_ACTOR, stepId);
        const task = await getTask(rt.res, t.id, taskId);
        ctx.print(cmd, task, `step ${stepId} queued again (task ${taskId}, now ${task.status})`);
      });
    });
}

import { Option, type Command } from 'commander';
import { cancelTask, getTask, listTasks, type TaskDetail } from '@steward/core/tasks/task-service';
import { TASK_STATUSES } from '@steward/core/tasks/task-types';
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

/** A task in human form: its fields, its steps and its approvals. */
export function taskText(t: TaskDetail): string {
  const lines = [
    `${t.title}`,
    `  id        ${t.id}`,
    `  status    ${t.status}${t.needsActionReason ? ` (${t.needsActionReason})` : ''}`,
    `  source    ${t.source}${t.event?.from ? ` from ${t.event.from}` : ''}`,
    `  planner   ${t.planner ?? '-'}${t.planSummary ? `: ${t.planSummary}` : ''}`,
    `  created   ${when(t.createdAt)}${t.finishedAt ? `, finished ${when(t.finishedAt)}` : ''}`,
  ];
  if (t.error) lines.push(`  error     ${JSON.stringify(t.error).slice(0, 300)}`);
  lines.push(
    '',
    table(
      [
        { header: 'STEP', max: 24 },
        { header: 'TOOL', max: 30 },
        { header: 'STATUS', max: 18 },
        { header: 'RISK' },
        { header: 'TRIES' },
        { header: 'APPROVAL', max: 70 },
        { header: 'ID' },
      ],
      t.steps.map((s) => [
        s.kind === 'compensation' ? `${s.key} (undo)` : s.key,
        s.tool,
        s.status,
        s.risk,
        `${s.attempts}/${s.maxAttempts}`,
        s.needsApproval ? s.approvalReasons.join('; ') || 'needed' : 'auto',
        s.id,
      ]),
      'no plan yet',
    ),
  );
  if (t.approvals.length) {
    lines.push(
      '',
      table(
        [{ header: 'APPROVAL' }, { header: 'STATUS' }, { header: 'VOTES' }, { header: 'FOR', max: 60 }],
        t.approvals.map((a) => [
          a.id,
          a.status,
          `${a.approvals}/${a.quorum}`,
          a.scope === 'plan'
            ? 'the whole plan'
            : (t.steps.find((s) => s.id === a.stepId)?.key ?? a.stepId ?? '-'),
        ]),
      ),
    );
  }
  return lines.join('\n');
}

/** `steward task list|show|cancel`. */
export function addTaskCommands(program: Command, ctx: CliContext): void {
  const task = program.command('task').description('tasks');

  tenantOption(task.command('list'))
    .description('tasks, newest first')
    .addOption(new Option('--status <status>', 'only tasks in this status').choices(TASK_STATUSES))
    .option('--limit <n>', 'how many (1-200)', limitOption, 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(async (o: { tenant: string; status?: string; limit: number; cursor?: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const page = await listTasks(rt.res, t.id, o);
        ctx.print(
          cmd,
          page,
          pageText(
            table(
              [
                { header: 'ID' },
                { header: 'STATUS' },
                { header: 'SOURCE', max: 12 },
                { header: 'CREATED' },
                { header: 'TITLE', max: 70 },
              ],
              page.items.map((x) => [x.id, x.status, x.source, when(x.createdAt), x.title]),
              'no tasks',
            ),
            page.nextCursor,
          ),
        );
      }),
    );

  tenantOption(task.command('show'))
    .description('a task with its event, plan steps and approvals')
    .argument('<id>', 'the task id')
    .action(async (id: string, o: { tenant: string }, cmd: Command) => {
      uuidArg(id, 'the task');
      await ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const detail = await getTask(rt.res, t.id, id);
        ctx.print(cmd, detail, taskText(detail));
      });
    });

  tenantOption(task.command('cancel'))
    .description('cancel a task, including steps that are running')
    .argument('<id>', 'the task id')
    .action(async (id: string, o: { tenant: string }, cmd: Command) => {
      uuidArg(id, 'the task');
      await ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const running = await cancelTask(rt.res, t.id, CLI_ACTOR, id);
        const detail = await getTask(rt.res, t.id, id);
        ctx.print(
          cmd,
          detail,
          `task ${id} cancelled` +
            (running.length ? ` (${running.length} running step(s) told to stop)` : ''),
        );
      });
    });
}

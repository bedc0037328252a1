import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { invalid } from '@steward/core/errors/app-error';
import { submitEvent, type EventInput } from '@steward/core/tasks/task-service';
import { EventBody } from '../routes/loop-schemas.ts';
import { checkSchema, CLI_ACTOR, parseJson, tenantOf, tenantOption, type CliContext } from './cli-support.ts';

interface SubmitOptions {
  tenant: string;
  source: string;
  type: string;
  externalId?: string;
  from?: string;
  subject?: string;
  body?: string;
  bodyFile?: string;
  data?: string;
}

const FLAGS: Record<string, string> = { externalId: '--external-id', body: '--body / --body-file' };

/** `steward event submit`: the same intake as POST /api/v1/events (dedupe by source and external id). */
export function addEventCommands(program: Command, ctx: CliContext): void {
  const event = program.command('event').description('events (each becomes a task)');
  tenantOption(event.command('submit'))
    .description('submit an event; it becomes a task (the same --source and --external-id twice: one task)')
    .requiredOption('--source <source>', 'where it came from: email, folder, webhook, api, cli, ...')
    .requiredOption('--type <type>', 'what it is: message, file, invoice, ...')
    .option('--external-id <id>', 'deduplication key within the source')
    .option('--from <sender>')
    .option('--subject <subject>')
    .option('--body <text>')
    .option('--body-file <path>', 'read the body from a file')
    .option('--data <json>', 'structured fields, a JSON object (for example {"amount": 250})')
    .action(async (o: SubmitOptions, cmd: Command) => {
      if (o.body !== undefined && o.bodyFile !== undefined)
        throw invalid('give --body or --body-file, not both');
      let body = o.body;
      if (o.bodyFile !== undefined) {
        try {
          body = await readFile(o.bodyFile, 'utf8');
        } catch (error) {
          throw invalid(`--body-file: cannot read ${o.bodyFile} (${(error as NodeJS.ErrnoException).code})`);
        }
      }
      const data = o.data === undefined ? undefined : parseJson(o.data, '--data');
      const input = Object.fromEntries(
        Object.entries({
          source: o.source,
          type: o.type,
          externalId: o.externalId,
          from: o.from,
          subject: o.subject,
          body,
          data,
        }).filter(([, v]) => v !== undefined),
      );
      const e = checkSchema<EventInput>(EventBody, input, (p) => {
        const key = p.split('/')[1] ?? '';
        return FLAGS[key] ?? `--${key}`;
      });
      await ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const intake = await submitEvent(rt.res, t.id, CLI_ACTOR, e);
        ctx.print(
          cmd,
          intake,
          intake.duplicate
            ? `already submitted: task ${intake.taskId} (event ${intake.eventId})`
            : `task ${intake.taskId} (event ${intake.eventId})`,
        );
      });
    });
}

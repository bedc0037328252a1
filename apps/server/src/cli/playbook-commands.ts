import { readFile } from 'node:fs/promises';
import { Type } from '@sinclair/typebox';
import type { Command } from 'commander';
import { invalid, notFound } from '@steward/core/errors/app-error';
import { PlaybookConditions, PlaybookStep } from '@steward/core/planner/playbook';
import {
  createPlaybook,
  deletePlaybook,
  getPlaybook,
  listPlaybooks,
  type PlaybookInput,
  type PlaybookView,
} from '@steward/core/planner/playbook-service';
import type { Resources } from '@steward/core/resources';
import { isUuid } from '@steward/db/database';
import {
  checkSchema,
  CLI_ACTOR,
  limitOption,
  pageText,
  parseJson,
  table,
  tenantOf,
  tenantOption,
  type CliContext,
} from './cli-support.ts';

/** The body POST /api/v1/playbooks accepts (the same limits). */
export const PlaybookFile = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    enabled: Type.Optional(Type.Boolean()),
    priority: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000 })),
    when: PlaybookConditions,
    steps: Type.Array(PlaybookStep, { minItems: 1, maxItems: 25 }),
  },
  { additionalProperties: false },
);

const MAX_FILE_BYTES = 1_048_576;

/** A playbook named by its id or by its exact name. */
async function findPlaybook(res: Resources, tenantId: string, idOrName: string): Promise<PlaybookView> {
  if (isUuid(idOrName)) return getPlaybook(res, tenantId, idOrName);
  let cursor: string | undefined;
  do {
    const page = await listPlaybooks(res, tenantId, { limit: 200, cursor });
    const found = page.items.find((p) => p.name === idOrName);
    if (found) return found;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  throw notFound(`playbook "${String(idOrName).slice(0, 100)}"`);
}

function playbookText(p: PlaybookView): string {
  return [
    `${p.name}${p.enabled ? '' : ' (disabled)'}`,
    `  id          ${p.id}`,
    `  priority    ${p.priority}`,
    ...(p.description ? [`  description ${p.description}`] : []),
    `  when        ${JSON.stringify(p.when)}`,
    '',
    table(
      [
        { header: 'STEP', max: 40 },
        { header: 'TOOL', max: 40 },
        { header: 'RISK' },
        { header: 'AFTER', max: 30 },
        { header: 'ARGS', max: 90 },
      ],
      p.steps.map((s) => [
        s.key,
        s.tool,
        s.risk ?? '(tool)',
        s.dependsOn?.join(', ') || '-',
        JSON.stringify(s.args),
      ]),
    ),
  ].join('\n');
}

/** `steward playbook list|show|create|delete`. */
export function addPlaybookCommands(program: Command, ctx: CliContext): void {
  const playbook = program.command('playbook').description('playbooks (the offline planner)');

  tenantOption(playbook.command('list'))
    .description('playbooks, in the order they are tried')
    .option('--limit <n>', 'how many (1-200)', limitOption, 50)
    .option('--cursor <cursor>', 'the next page (printed after a full page)')
    .action(async (o: { tenant: string; limit: number; cursor?: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const page = await listPlaybooks(rt.res, t.id, o);
        ctx.print(
          cmd,
          page,
          pageText(
            table(
              [
                { header: 'ID' },
                { header: 'PRIORITY' },
                { header: 'ENABLED' },
                { header: 'NAME', max: 40 },
                { header: 'STEPS', max: 70 },
              ],
              page.items.map((p) => [
                p.id,
                p.priority,
                p.enabled ? 'yes' : 'no',
                p.name,
                p.steps.map((s) => s.tool).join(', '),
              ]),
              'no playbooks',
            ),
            page.nextCursor,
          ),
        );
      }),
    );

  tenantOption(playbook.command('show'))
    .description('one playbook, by id or by name')
    .argument('<playbook>', 'its id or its name')
    .action(async (idOrName: string, o: { tenant: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const p = await findPlaybook(rt.res, t.id, idOrName);
        ctx.print(cmd, p, playbookText(p));
      }),
    );

  tenantOption(playbook.command('create'))
    .description('create a playbook from a JSON file (the body of POST /api/v1/playbooks)')
    .requiredOption('--file <path>', 'PLAYBOOK.json: {"name", "when": {...}, "steps": [...]}')
    .action(async (o: { tenant: string; file: string }, cmd: Command) => {
      let text: string;
      try {
        text = await readFile(o.file, 'utf8');
      } catch (error) {
        throw invalid(`--file: cannot read ${o.file} (${(error as NodeJS.ErrnoException).code})`);
      }
      if (Buffer.byteLength(text) > MAX_FILE_BYTES) throw invalid('--file: a playbook file is at most 1 MB');
      const input = checkSchema<PlaybookInput>(
        PlaybookFile,
        parseJson(text, o.file),
        (p) => `${o.file}${p || ''}`,
      );
      await ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const p = await createPlaybook(rt.res, t.id, CLI_ACTOR, input);
        ctx.print(cmd, p, `playbook "${p.name}" (${p.id})`);
      });
    });

  tenantOption(playbook.command('delete'))
    .description('delete a playbook, by id or by name')
    .argument('<playbook>', 'its id or its name')
    .action(async (idOrName: string, o: { tenant: string }, cmd: Command) =>
      ctx.withRuntime(cmd, async (rt) => {
        const t = await tenantOf(rt, o.tenant);
        const p = await findPlaybook(rt.res, t.id, idOrName);
        await deletePlaybook(rt.res, t.id, CLI_ACTOR, p.id);
        ctx.print(cmd, { deleted: true, id: p.id, name: p.name }, `deleted playbook "${p.name}" (${p.id})`);
      }),
    );
}

import { conflict, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import type { PlaybookConditions, PlaybookStep } from './playbook.ts';
import { toolsForTenant } from '../mcp/mcp-service.ts';

export interface PlaybookView {
  id: string;
  name: string;
  description: string;
  enabled: boolean;
  priority: number;
  when: PlaybookConditions;
  steps: PlaybookStep[];
  createdAt: string;
  updatedAt: string;
}

interface Row {
  id: string;
  name: string;
  description: string;
  enabled: boolean;
  priority: number;
  conditions: PlaybookConditions;
  steps: PlaybookStep[];
  created_at: Date;
  updated_at: Date;
}

const toView = (r: Row): PlaybookView => ({
  id: r.id,
  name: r.name,
  description: r.description,
  enabled: r.enabled,
  priority: r.priority,
  when: r.conditions,
  steps: r.steps,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
});

export interface PlaybookInput {
  name: string;
  description?: string | undefined;
  enabled?: boolean | undefined;
  priority?: number | undefined;
  when: PlaybookConditions;
  steps: PlaybookStep[];
}

/** Structural checks a playbook must pass to be saved (arguments are checked after templating, at planning). */
export function playbookProblems(
  input: Pick<PlaybookInput, 'when' | 'steps'>,
  toolNames: ReadonlySet<string>,
): string[] {
  const problems: string[] = [];
  if (!input.steps.length) problems.push('body/steps must have at least one step');
  const keys = new Set<string>();
  for (const s of input.steps) {
    if (keys.has(s.key)) problems.push(`body/steps: key "${s.key}" is used twice`);
    keys.add(s.key);
    if (!toolNames.has(s.tool))
      problems.push(`body/steps/${s.key}: tool "${s.tool}" is not available to this tenant`);
    if (s.compensation && !toolNames.has(s.compensation.tool)) {
      problems.push(
        `body/steps/${s.key}/compensation: tool "${s.compensation.tool}" is not available to this tenant`,
      );
    }
  }
  for (const s of input.steps) {
    for (const d of s.dependsOn ?? [])
      if (!keys.has(d) || d === s.key) problems.push(`body/steps/${s.key}: cannot depend on "${d}"`);
  }
  for (const t of [input.when.from, input.when.subject, input.when.body]) {
    if (t?.matches !== undefined) {
      try {
        new RegExp(t.matches, 'i');
      } catch {
        problems.push(`body/when: "${t.matches}" is not a valid regular expression`);
      }
    }
  }
  return problems;
}

async function toolNames(res: Resources, tenantId: string): Promise<Set<string>> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [t] = await tx<
      { settings: Record<string, unknown> }[]
    >`select settings from tenants where id = ${tenantId}`;
    return new Set((await toolsForTenant(res, tx, tenantId, t?.settings ?? {})).keys());
  });
}

export async function listPlaybooks(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<PlaybookView>> {
  const after = decodeCursor(q.cursor, ['p', 'name']);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select * from playbooks where tenant_id = ${tenantId}
        ${after ? tx`and (priority, name) > (${Number(after.p)}, ${after.name})` : tx``}
      order by priority, name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map(toView);
    const last = items.at(-1);
    return {
      items,
      nextCursor: rows.length > q.limit && last ? encodeCursor({ p: last.priority, name: last.name }) : null,
    };
  });
}

export async function getPlaybook(res: Resources, tenantId: string, id: string): Promise<PlaybookView> {
  const [row] = await res.db.withTenant(
    tenantId,
    (tx) => tx<Row[]>`select * from playbooks where tenant_id = ${tenantId} and id = ${id}`,
  );
  if (!row) throw notFound('playbook');
  return toView(row);
}

export async function createPlaybook(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: PlaybookInput,
): Promise<PlaybookView> {
  const problems = playbookProblems(input, await toolNames(res, tenantId));
  if (problems.length) throw invalid(problems.join('; '));
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<Row[]>`
      insert into playbooks (tenant_id, name, description, enabled, priority, conditions, steps)
      values (${tenantId}, ${input.name}, ${input.description ?? ''}, ${input.enabled ?? true}, ${input.priority ?? 100},
              ${tx.json(input.when as never)}, ${tx.json(input.steps as never)})
      on conflict (tenant_id, name) do nothing returning *`;
    if (!row) throw conflict(`a playbook named "${input.name}" already exists`);
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'playbook.created',
      targetType: 'playbook',
      targetId: row.id,
      details: { name: input.name, tools: input.steps.map((s) => s.tool) },
    });
    return toView(row);
  });
}

export async function updatePlaybook(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  input: Partial<PlaybookInput>,
): Promise<PlaybookView> {
  const current = await getPlaybook(res, tenantId, id);
  const next = {
    ...current,
    ...Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined)),
  } as PlaybookView;
  const problems = playbookProblems(next, await toolNames(res, tenantId));
  if (problems.length) throw invalid(problems.join('; '));
  return res.db
    .withTenant(tenantId, async (tx) => {
      const [row] = await tx<Row[]>`
      update playbooks set name = ${next.name}, description = ${next.description}, enabled = ${next.enabled},
        priority = ${next.priority}, conditions = ${tx.json(next.when as never)}, steps = ${tx.json(next.steps as never)},
        updated_at = now()
      where tenant_id = ${tenantId} and id = ${id} returning *`;
      if (!row) throw notFound('playbook');
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'playbook.updated',
        targetType: 'playbook',
        targetId: id,
        details: { fields: Object.keys(input) },
      });
      return toView(row);
    })
    .catch((e: unknown) => {
      if ((e as { code?: string }).code === '23505')
        throw conflict(`a playbook named "${next.name}" already exists`);
      throw e;
    });
}

export async function deletePlaybook(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<
      { name: string }[]
    >`delete from playbooks where tenant_id = ${tenantId} and id = ${id} returning name`;
    if (!row) throw notFound('playbook');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'playbook.deleted',
      targetType: 'playbook',
      targetId: id,
      details: { name: row.name },
    });
  });
}

import { Type } from '@sinclair/typebox';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Tool } from '../tool.ts';

export interface VaultNoteArgs {
  title: string;
  body: string;
  folder?: string;
}

/** A file name that cannot leave its folder. */
export function safeFileName(title: string): string {
  const name = title
    .normalize('NFKC')
    .replace(/[\\/:*?"<>|]|\p{Cc}/gu, ' ')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(/^\.+/, '')
    .slice(0, 120);
  return name || 'Untitled';
}

/** Write a markdown note into the tenant's vault (Notes/ or a sub-folder of it). */
export function vaultNoteTool(vaultDir: (tenantSlug: string) => string): Tool<VaultNoteArgs> {
  return {
    name: 'vault.write_note',
    description: "Write a markdown note into the tenant's vault",
    risk: 'low',
    retryable: true,
    args: Type.Object(
      {
        title: Type.String({ minLength: 1, maxLength: 200 }),
        body: Type.String({ maxLength: 200_000 }),
        folder: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9 _-]{1,60}$' })),
      },
      { additionalProperties: false },
    ),
    preview: (a) => [
      {
        kind: 'vault.write',
        summary: `write note "${a.title}"`,
        target: `Notes/${a.folder ? a.folder + '/' : ''}${safeFileName(a.title)}.md`,
      },
    ],
    async execute(ctx, a) {
      const dir = path.join(vaultDir(ctx.tenantSlug), 'Notes', ...(a.folder ? [a.folder] : []));
      await mkdir(dir, { recursive: true });
      const file = path.join(dir, `${safeFileName(a.title)}.md`);
      // Same idempotency key, same content: writing again is harmless.
      const tmp = `${file}.${ctx.idempotencyKey}.tmp`;
      await writeFile(tmp, `---\nidempotency_key: ${ctx.idempotencyKey}\n---\n\n# ${a.title}\n\n${a.body}\n`);
      await rename(tmp, file);
      return { path: path.relative(vaultDir(ctx.tenantSlug), file) };
    },
  };
}

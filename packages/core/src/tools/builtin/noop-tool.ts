import { Type } from '@sinclair/typebox';
import type { Tool } from '../tool.ts';

/** Does nothing and succeeds: for trying playbooks out and for benchmarks. */
export const noopTool: Tool<{ note?: string }> = {
  name: 'noop',
  description: 'Do nothing (useful to test a playbook)',
  risk: 'low',
  retryable: true,
  args: Type.Object(
    { note: Type.Optional(Type.String({ maxLength: 1000 })) },
    { additionalProperties: false },
  ),
  preview: (args) => [{ kind: 'none', summary: args.note ? `nothing (${args.note})` : 'nothing' }],
  execute: async () => ({ ok: true }),
};

import path from 'node:path';
import { noopTool } from '@steward/core/tools/builtin/noop-tool';
import { notifyTool } from '@steward/core/tools/builtin/notify-tool';
import { vaultNoteTool } from '@steward/core/tools/builtin/vault-note-tool';
import { ToolRegistry } from '@steward/core/tools/tool-registry';

/** The tools every installation offers. */
export function builtinTools(dataDir: string): ToolRegistry {
  const vaultDir = (slug: string) => path.join(dataDir, 'tenants', slug, 'vault');
  return new ToolRegistry().register(noopTool).register(vaultNoteTool(vaultDir)).register(notifyTool);
}

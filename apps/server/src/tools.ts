import path from 'node:path';
import { vaultFor } from '@steward/core/connections/connection-service';
import type { MasterKey } from '@steward/core/crypto/master-key';
import { emailTool } from '@steward/core/tools/builtin/email-tool';
import { httpRequestTool } from '@steward/core/tools/builtin/http-request-tool';
import { noopTool } from '@steward/core/tools/builtin/noop-tool';
import { notifyTool } from '@steward/core/tools/builtin/notify-tool';
import { vaultNoteTool } from '@steward/core/tools/builtin/vault-note-tool';
import { ToolRegistry } from '@steward/core/tools/tool-registry';

/** The tools every installation offers. */
export function builtinTools(dataDir: string, deps: { master: MasterKey }): ToolRegistry {
  const vaultDir = (slug: string) => path.join(dataDir, 'tenants', slug, 'vault');
  const vault = vaultFor(deps.master);
  return new ToolRegistry()
    .register(noopTool)
    .register(vaultNoteTool(vaultDir))
    .register(notifyTool)
    .register(emailTool({ vault }))
    .register(httpRequestTool({ vault }));
}

import type { Server } from '@modelcontextprotocol/sdk/server/index.js';

export interface RecordedMcpCall {
  tool: string;
  args: Record<string, unknown>;
  meta: Record<string, unknown>;
}
export declare const INVOICE_TOOLS: { name: string; inputSchema: Record<string, unknown> }[];
export declare function invoiceServer(
  record: (call: RecordedMcpCall) => void,
  lookupText?: (args: Record<string, unknown>) => string | undefined,
): Server;

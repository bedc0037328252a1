// A small MCP server for tests, built with the official SDK: an invoice lookup (read-only) and a
// payment. Run directly, it serves over stdio and appends every call to the file in MCP_CALL_LOG (and
// its process id, once at start, to the file in MCP_PID_LOG).
import { appendFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';

export const INVOICE_TOOLS = [
  {
    name: 'lookup_invoice',
    description: 'Look up an invoice by number',
    inputSchema: {
      type: 'object',
      properties: { number: { type: 'string', pattern: '^INV-[0-9]+$' } },
      required: ['number'],
      additionalProperties: false,
    },
    annotations: { readOnlyHint: true },
  },
  {
    name: 'pay_invoice',
    description: 'Pay an invoice',
    inputSchema: {
      type: 'object',
      properties: { number: { type: 'string' }, amount: { type: 'number', minimum: 0 } },
      required: ['number', 'amount'],
      additionalProperties: false,
    },
    // A server may claim anything: Steward must not believe this is harmless.
    annotations: { readOnlyHint: false, destructiveHint: true },
  },
  {
    name: 'delete_everything',
    description: 'Not on any allow-list',
    inputSchema: { type: 'object', properties: {}, additionalProperties: false },
    annotations: { readOnlyHint: true },
  },
];

/**
 * A fresh SDK server. `record(call)` sees every tools/call ({ tool, args, meta }); `lookupText(args)`
 * may replace what lookup_invoice returns (the prompt-injection tests put an attack there).
 */
export function invoiceServer(record, lookupText) {
  const server = new Server({ name: 'invoices', version: '1.0.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: INVOICE_TOOLS }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => {
    const { name, arguments: args = {}, _meta: meta = {} } = request.params;
    record({ tool: name, args, meta });
    if (name === 'lookup_invoice') {
      const text = lookupText?.(args) ?? `Invoice ${args.number}: 250.00 EUR, due 2026-12-01, payee ACME`;
      return { content: [{ type: 'text', text }], structuredContent: { number: args.number, amount: 250 } };
    }
    if (name === 'pay_invoice') {
      return { content: [{ type: 'text', text: `paid ${args.number}: ${args.amount}` }] };
    }
    return { content: [{ type: 'text', text: `unknown tool ${name}` }], isError: true };
  });
  return server;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const log = process.env.MCP_CALL_LOG;
  // Which processes were started (the connection-pool tests count them).
  if (process.env.MCP_PID_LOG) appendFileSync(process.env.MCP_PID_LOG, `${process.pid}\n`);
  const server = invoiceServer((call) => {
    if (log) appendFileSync(log, JSON.stringify(call) + '\n');
  });
  await server.connect(new StdioServerTransport());
}

import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { invoiceServer, type RecordedMcpCall } from './mcp-invoice-server.mjs';

export interface HttpMcpServer {
  url: string;
  calls: RecordedMcpCall[];
  /** Headers of every HTTP request the server received. */
  headers: IncomingHttpHeaders[];
  /** What lookup_invoice returns instead of the normal text (prompt-injection tests). */
  lookupText: ((args: Record<string, unknown>) => string | undefined) | undefined;
  close(): Promise<void>;
}

/** The invoice MCP server over streamable HTTP on 127.0.0.1 (stateless: a fresh server per request). */
export async function startHttpMcp(
  opts: { tls?: { cert: string; key: string; ca: string } } = {},
): Promise<HttpMcpServer> {
  const mcp: HttpMcpServer = {
    url: '',
    calls: [],
    headers: [],
    lookupText: undefined,
    close: async () => {},
  };
  const handler: Parameters<typeof createServer>[1] = (req, res) => {
    mcp.headers.push(req.headers);
    const server = invoiceServer(
      (c) => mcp.calls.push(c),
      (args) => mcp.lookupText?.(args),
    );
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on('close', () => {
      void transport.close();
      void server.close();
    });
    server
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
  };
  // With tls: HTTPS that requires a client certificate from opts.tls.ca (mutual TLS).
  const http: Server = opts.tls
    ? createTlsServer({ ...opts.tls, requestCert: true, rejectUnauthorized: true }, handler)
    : createServer(handler);
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  mcp.url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}/mcp`;
  mcp.close = () =>
    new Promise<void>((resolve) => {
      http.closeAllConnections();
      http.close(() => resolve());
    });
  return mcp;
}

import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { sendError } from '../http/error-handler.ts';

/** Where `npm run build` puts the dashboard. */
export const DEFAULT_WEB_DIR = path.resolve(import.meta.dirname, '../../../web/dist');

/** Paths that belong to the API and the server, never to the single-page app. */
const SERVER_PREFIXES = [
  '/api',
  '/hooks',
  '/scim',
  '/docs',
  '/healthz',
  '/readyz',
  '/metrics',
  '/openapi.json',
];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.webmanifest': 'application/manifest+json; charset=utf-8',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

/** Hashed file names never change: cache them for a year. Everything else is revalidated. */
function cachePolicy(rel: string): string {
  if (rel.startsWith('assets/')) return 'public, max-age=31536000, immutable';
  if (rel === 'sw.js' || rel === 'index.html') return 'no-cache';
  return 'public, max-age=3600';
}

async function fileIn(dir: string, rel: string): Promise<string | undefined> {
  const full = path.resolve(dir, rel);
  if (!full.startsWith(dir + path.sep)) return undefined;
  try {
    return (await stat(full)).isFile() ? full : undefined;
  } catch {
    return undefined;
  }
}

async function send(reply: FastifyReply, full: string, rel: string) {
  const body = await readFile(full);
  reply.header('content-type', TYPES[path.extname(full)] ?? 'application/octet-stream');
  reply.header('cache-control', cachePolicy(rel));
  if (rel === 'sw.js') reply.header('service-worker-allowed', '/');
  return reply.send(body);
}

/**
 * The web dashboard: built files from `dir`, and index.html for any other page a browser asks for
 * (Accept: text/html) that is not an API or server path (client-side routes). Registered last, as a wildcard, so every real route wins.
 */
export function webRoutes(webDir: string = DEFAULT_WEB_DIR) {
  const dir = path.resolve(webDir);
  return async (app: FastifyInstance) => {
    app.get('/*', { schema: { hide: true } }, async (request, reply) => {
      let urlPath: string;
      try {
        urlPath = decodeURIComponent(request.url.split('?')[0]!);
      } catch {
        return sendError(reply, 'BAD_REQUEST', 'malformed path');
      }
      if (SERVER_PREFIXES.some((p) => urlPath === p || urlPath.startsWith(`${p}/`))) {
        return sendError(reply, 'NOT_FOUND', `no route GET ${urlPath}`);
      }
      const rel = urlPath.replace(/^\/+/, '');
      const file = rel ? await fileIn(dir, rel) : undefined;
      if (file) return send(reply, file, path.relative(dir, file).split(path.sep).join('/'));
      // A missing file (a name with an extension, or anything under /assets) is a 404, not the app.
      if (rel.startsWith('assets/') || /\.[a-z0-9]+$/i.test(rel)) {
        return sendError(reply, 'NOT_FOUND', `no file ${urlPath}`);
      }
      // The app for a page a browser navigates to; the usual 404 for any other client.
      if (rel !== '' && !String(request.headers.accept ?? '').includes('text/html')) {
        return sendError(reply, 'NOT_FOUND', `no route GET ${urlPath}`);
      }
      const index = await fileIn(dir, 'index.html');
      if (!index) {
        return reply
          .code(503)
          .header('content-type', 'text/plain; charset=utf-8')
          .send('The web dashboard is not built: run `npm run build` (npm start does it for you).');
      }
      return send(reply, index, 'index.html');
    });
  };
}

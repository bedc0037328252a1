import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import { AppError } from '@steward/core/errors/app-error';
import { StreamTickets } from '@steward/core/live/stream-tickets';
import { listUserTenants } from '@steward/core/identity/user-tenants';
import type { FastifyInstance } from 'fastify';
import { principalOf } from '../http/request-actor.ts';
import { errors } from '../http/schemas.ts';

/** A stream lives this long, then the client reconnects with a new ticket (bounds revocation delay). */
const STREAM_MAX_MS = 10 * 60_000;
const HEARTBEAT_MS = 15_000;

/** The live stream of state changes for the web dashboard (Server-Sent Events). */
export function liveRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    const tickets = new StreamTickets(res.master);
    // Open streams end before the server closes (they would otherwise hold app.close() open).
    const open = new Set<() => void>();
    instance.addHook('preClose', async () => {
      for (const stop of [...open]) stop();
    });
    app.get(
      '/me/tenants',
      {
        config: { access: 'session' },
        schema: {
          tags: ['auth'],
          summary: 'The tenants the signed-in user belongs to (for POST /auth/switch-tenant)',
          response: {
            200: Type.Object({
              items: Type.Array(Type.Object({ id: Type.String(), slug: Type.String(), name: Type.String() })),
            }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => ({ items: await listUserTenants(res, principalOf(request).userId!) }),
    );
    app.post(
      '/stream-tickets',
      {
        config: { access: 'tasks:read' },
        schema: {
          tags: ['live'],
          summary: 'A single-use ticket (valid 60 s) to open GET /events/stream',
          response: {
            200: Type.Object({ ticket: Type.String(), expiresIn: Type.Integer() }),
            ...errors(401, 403),
          },
        },
      },
      async (request) => {
        const p = principalOf(request);
        const subject = p.kind === 'user' ? `user:${p.userId}` : `api_key:${p.apiKeyId}`;
        return tickets.issue({ tenantId: p.tenantId, subject });
      },
    );
    app.get(
      '/events/stream',
      {
        // Authenticated by the ticket in the query (EventSource cannot send headers).
        config: { access: 'public' },
        schema: {
          tags: ['live'],
          summary:
            "Server-Sent Events of the tenant's task, step and approval state changes (`event: change`, data {kind,id,taskId}); authenticate with ?ticket= from POST /stream-tickets",
          security: [],
          querystring: Type.Object(
            { ticket: Type.String({ minLength: 1, maxLength: 1000 }) },
            { additionalProperties: false },
          ),
          response: { ...errors(400, 401, 503) },
        },
      },
      async (request, reply) => {
        const claims = tickets.redeem(request.query.ticket);
        const feed = res.changes;
        if (!feed) throw new AppError('UNAVAILABLE', 'live updates are not available on this server');
        const raw = reply.raw;
        let started = false;
        let closed = false;
        const pending: string[] = [];
        const write = (chunk: string) => {
          if (!closed) raw.write(chunk);
        };
        const unsubscribe = await feed.subscribe(claims.tenantId, (c) => {
          const line = `event: change\ndata: ${JSON.stringify({ kind: c.kind, id: c.id, taskId: c.taskId })}\n\n`;
          if (started) write(line);
          else pending.push(line);
        });
        reply.hijack();
        raw.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-cache, no-store',
          connection: 'keep-alive',
          'x-accel-buffering': 'no',
        });
        write('retry: 2000\nevent: ready\ndata: {}\n\n');
        started = true;
        for (const line of pending.splice(0)) write(line);
        const heartbeat = setInterval(() => write(': keep-alive\n\n'), HEARTBEAT_MS);
        const stop = () => {
          if (closed) return;
          closed = true;
          clearInterval(heartbeat);
          clearTimeout(expiry);
          unsubscribe();
          open.delete(stop);
          raw.end();
        };
        const expiry = setTimeout(stop, STREAM_MAX_MS);
        open.add(stop);
        raw.on('close', stop);
      },
    );
  };
}

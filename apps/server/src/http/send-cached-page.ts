import type { FastifyReply } from 'fastify';
import type { PageCache } from '@steward/core/cache/page-cache';

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * Answer a GET with a page from the page cache, or build it, serialize it with the route's 200
 * response schema and store it. Call it only from a handler: the route's permission has been
 * checked by then (authorization is never cached around). `key` must hold everything else the body
 * depends on besides the tenant: the route and its normalized query, and whatever of the principal
 * changes the body. `build` must read the database only inside the tenant (RLS). Without a cache,
 * or while it is bypassed, the page is built every time.
 */
export async function sendCachedPage(
  cache: PageCache | undefined,
  reply: FastifyReply,
  tenantId: string,
  key: string,
  build: () => Promise<unknown>,
): Promise<FastifyReply> {
  if (!cache) return reply.send(await build());
  const body = await cache.load(tenantId, key, async () =>
    Buffer.from(reply.serialize(await build()) as string),
  );
  return reply.type(JSON_TYPE).send(body);
}

import { Writable } from 'node:stream';
import Fastify from 'fastify';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { lazyChildLogger } from './lazy-request-logger.ts';

async function appAt(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      cb();
    },
  });
  const logger = pino({ level, redact: { paths: ['secret'], censor: '[redacted]' } }, stream);
  let children = 0;
  // pino's children inherit this property from the root: count through the prototype chain
  const original = logger.child;
  logger.child = function (this: typeof logger, ...args: Parameters<typeof logger.child>) {
    children++;
    return original.apply(this, args);
  } as typeof logger.child;
  const app = Fastify({ loggerInstance: logger, childLoggerFactory: lazyChildLogger });
  app.get('/quiet', async (request) => {
    request.log.info('not at warn');
    request.log.debug({ secret: 'x' }, 'not at warn either');
    return { ok: true };
  });
  app.get('/loud', async (request) => {
    request.log.warn({ secret: 's3cret' }, 'something odd');
    request.log.child({ part: 'inner' }).error('inner failure');
    return { ok: true };
  });
  app.get('/route-level', { logLevel: 'error' }, async (request) => {
    request.log.warn('below the route level');
    return { ok: true };
  });
  await app.ready();
  return { app, lines, children: () => children };
}

describe('lazyChildLogger', () => {
  it('makes no child logger for a request that logs nothing at an enabled level', async () => {
    const { app, lines, children } = await appAt('warn');
    const before = children();
    expect((await app.inject({ url: '/quiet' })).statusCode).toBe(200);
    expect(children()).toBe(before);
    expect(lines).toEqual([]);
    await app.close();
  });

  it('logs what the plain child would: the request id, redaction, nested children', async () => {
    const { app, lines } = await appAt('warn');
    const r = await app.inject({ url: '/loud', headers: { 'request-id': 'ignored' } });
    expect(r.statusCode).toBe(200);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 40, msg: 'something odd', secret: '[redacted]' });
    expect(lines[1]).toMatchObject({ level: 50, msg: 'inner failure', part: 'inner' });
    expect(lines[0]!.reqId).toBeDefined();
    expect(lines[1]!.reqId).toBe(lines[0]!.reqId);
    await app.close();
  });

  it("keeps Fastify's request logging when the level enables it, and a route's own level", async () => {
    const { app, lines } = await appAt('info');
    await app.inject({ url: '/quiet' });
    expect(lines.map((l) => l.msg)).toEqual(['incoming request', 'not at warn', 'request completed']);
    expect(new Set(lines.map((l) => l.reqId)).size).toBe(1);
    lines.length = 0;
    await app.inject({ url: '/route-level' });
    expect(lines).toEqual([]);
    await app.close();
  });
});

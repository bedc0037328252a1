import { connect } from 'node:net';

/** The Redis the tests use (TEST_REDIS_URL, default the local redis-server). */
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Why Redis tests cannot run here, or undefined when a Redis answers. */
export async function redisMissing(url = TEST_REDIS_URL): Promise<string | undefined> {
  const u = new URL(url);
  const ok = await new Promise<boolean>((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || 6379) });
    const done = (v: boolean) => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => {
      socket.write('PING\r\n');
      socket.once('data', (d) => done(String(d).startsWith('+PONG')));
    });
  });
  return ok
    ? undefined
    : `no Redis answers at ${url}: install and start redis-server (apt-get install redis-server)`;
}

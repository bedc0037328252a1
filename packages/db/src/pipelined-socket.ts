import net from 'node:net';

/** The part of postgres.js's parsed options its `socket` option is called with that we read. */
export interface SocketTarget {
  host: string[];
  port: number[];
  /** A Unix-domain socket's path (a host starting with `/`), else false. */
  path: string | false;
  /** Seconds; postgres.js's own connect timer starts only once it has the socket. */
  connect_timeout: number;
}

/**
 * The `socket` option of postgres.js: a connection to PostgreSQL whose writes of one turn of the
 * event loop leave in one system call.
 *
 * postgres.js sends a message of 1 kB or more at once and holds smaller ones until `setImmediate`,
 * so a pipeline of a large statement then small ones (the intake's insert and the audit head lock;
 * an audit write, a setting read and COMMIT) costs two writes, each waking the backend. Here the
 * socket is corked from its first write until postgres.js's own flush has run, then uncorked: one
 * `writev` per round trip. Like libpq, the socket sets TCP_NODELAY.
 *
 * It also fails the queries postgres.js sends into a socket that has just failed, which would
 * otherwise wait for ever (see failWaitingOnClose).
 *
 * Connects before handing the socket over (postgres.js attaches its listeners a microtask later and
 * starts writing at once). A failed connect hands over a socket that fails as soon as postgres.js
 * listens to it, so its usual error, close and reconnect path runs; never a rejection, which
 * postgres.js would not count as a closed connection.
 */
export function pipelinedSocket(): (target: SocketTarget) => Promise<net.Socket> {
  let next = 0;
  return (target) => {
    const i = next++ % target.host.length;
    const host = target.host[i]!;
    const port = target.port[i] ?? target.port[0]!;
    const where: Where = target.path ? { address: target.path } : { address: host, port };
    return new Promise((resolve) => {
      const socket = target.path ? net.connect(target.path) : net.connect({ host, port, noDelay: true });
      Object.assign(socket, { host, port });
      const timer =
        target.connect_timeout > 0
          ? setTimeout(() => fail(connectionError('CONNECT_TIMEOUT', where)), target.connect_timeout * 1000)
          : undefined;
      function fail(error: Error) {
        clearTimeout(timer);
        socket.destroy();
        const failed = Object.assign(new net.Socket(), { host, port });
        setImmediate(() => failed.destroy(error));
        resolve(failed);
      }
      socket.once('error', fail);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', fail);
        resolve(failWaitingOnClose(corkEachTurn(socket), where));
      });
    });
  };
}

/** Buffer a socket's writes from the first one until the end of the current turn of the event loop. */
function corkEachTurn(socket: net.Socket): net.Socket {
  const write = socket.write;
  let corked = false;
  const uncork = () => {
    corked = false;
    socket.uncork();
  };
  socket.write = function (this: net.Socket, ...args: Parameters<net.Socket['write']>) {
    if (!corked) {
      corked = true;
      socket.cork();
      // postgres.js flushes small messages with setImmediate, scheduled when the first of them is
      // written: possibly later in this microtask chain, after this write. A tick queued from a
      // microtask runs once the chain has drained, so the immediate queued from it runs after
      // postgres.js's flush, and takes whatever that wrote along.
      queueMicrotask(() => process.nextTick(() => setImmediate(uncork)));
    }
    return write.apply(this, args);
  } as net.Socket['write'];
  return socket;
}

/**
 * postgres.js fails the queries waiting on a connection when its socket closes cleanly, not when it
 * closes after an error (a terminated backend, a reset): a query sent between the error and the
 * close (the retry of the query the error failed, say) would wait for an answer for ever, holding
 * its pool slot. An error just before such a close fails them; they can be retried at once.
 */
function failWaitingOnClose(socket: net.Socket, where: Where): net.Socket {
  const emit = socket.emit as (this: net.Socket, event: string | symbol, ...args: unknown[]) => boolean;
  socket.emit = function (this: net.Socket, event: string | symbol, ...args: unknown[]) {
    if (event === 'close' && args[0] === true && this.listenerCount('error'))
      emit.call(this, 'error', connectionError('CONNECTION_CLOSED', where));
    return emit.call(this, event, ...args);
  } as net.Socket['emit'];
  return socket;
}

/** Where a socket connects: a TCP host and port, or a Unix-domain socket's path. */
interface Where {
  address: string;
  port?: number;
}

/** An error shaped like postgres.js's connection errors (CONNECT_TIMEOUT, CONNECTION_CLOSED). */
function connectionError(code: string, where: Where): Error {
  const at = where.port === undefined ? where.address : `${where.address}:${where.port}`;
  return Object.assign(new Error(`write ${code} ${at}`), { code, errno: code, ...where });
}

/**
 * postgres.js's own connection errors (node_modules/postgres/src/errors.js `Errors.connection`):
 * the socket closed under a query (CONNECTION_CLOSED), the pool was ended (CONNECTION_ENDED: the
 * process is shutting down), the connection was torn down with queries on it
 * (CONNECTION_DESTROYED), opening one took longer than connect_timeout (CONNECT_TIMEOUT), or no
 * connection of the pool came within its queue_timeout (QUEUE_TIMEOUT).
 */
const DRIVER_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'QUEUE_TIMEOUT',
]);

/** Node's socket and name-resolution errors: the database host is down, unreachable or unknown. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);

/** Socket calls that only open a connection (see the socket branch below). */
const CONNECT_SYSCALLS = new Set(['connect', 'getaddrinfo']);

/**
 * SQLSTATEs PostgreSQL answers when it cannot serve anyone right now, or when a transaction was
 * rolled back whole and trying it again is safe and usually works.
 */
function transientSqlState(code: string): boolean {
  // Class 08, connection exception, except 08P01 protocol_violation: that one is a client bug
  // (a malformed message), and sending the same request again fails the same way.
  if (code.startsWith('08')) return code !== '08P01';
  // 57P01 admin_shutdown (pg_terminate_backend, a fast shutdown), 57P02 crash_shutdown (another
  // backend crashed and the server is resetting), 57P03 cannot_connect_now (starting up, shutting
  // down or in recovery). Not 57P04 database_dropped: it will not come back. Not 57014
  // query_canceled: a statement timeout or a cancel is about that statement, not the server.
  if (code === '57P01' || code === '57P02' || code === '57P03') return true;
  // Class 53, insufficient resources: 53300 too_many_connections, 53200 out_of_memory (also "out of
  // shared memory" from the lock table), 53100 disk_full, 53000: the server's state, not the
  // request's fault, and it passes (connections are released, memory freed, an operator frees
  // disk). Not 53400 configuration_limit_exceeded: it is raised for one statement's own limits
  // (temp_file_limit, too many grouping sets), so the same request fails the same way again.
  if (code.startsWith('53')) return code !== '53400';
  // 40001 serialization_failure and 40P01 deadlock_detected: PostgreSQL rolled the whole
  // transaction back, so nothing of it is left and the client may simply send the request again;
  // a 500 would tell it the request is broken, which it is not. Nothing in Steward retries these
  // itself (its transactions are READ COMMITTED: 40001 comes from a hot standby's recovery
  // conflicts, 40P01 from two transactions locking rows in opposite orders), and a background
  // job that fails with one is retried by graphile-worker like any other failure: classifying
  // them here changes only the HTTP answer (503 with Retry-After instead of 500).
  return code === '40001' || code === '40P01';
}

/**
 * True when `error` says the database is unreachable or cannot serve the request right now (a
 * terminated backend, a restart, a refused connection, too many connections) rather than that the
 * request or the code is wrong: the API answers such errors 503 UNAVAILABLE with Retry-After.
 * Only the error's code is looked at, never its message (which may hold a statement's values).
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const e = error as { code?: unknown; name?: unknown; syscall?: unknown };
  const code = e.code;
  if (typeof code !== 'string') return false;
  // A SQLSTATE from the server (postgres.js names its server errors PostgresError).
  if (e.name === 'PostgresError') return transientSqlState(code);
  if (DRIVER_CODES.has(code)) return true;
  if (!SOCKET_CODES.has(code)) return false;
  // A socket error. postgres.js marks the errors it fails a query with by giving them the
  // statement (`query`, `parameters`: non-enumerable, never logged): such an error came from the
  // database, whichever socket call failed. Unmarked are those of sql.reserve() (how every
  // transaction starts) when no connection can be opened: the socket's error as it is, with
  // `syscall` connect or getaddrinfo. Nothing tells them from another client's failure to
  // connect, so those two calls are accepted unmarked and a broken established socket (read,
  // write) only with the mark. Other clients reached from a request wrap their failures (MCP,
  // SSO, Vault: AppError or their own errors); one that does not (the AWS KMS client) would
  // get a 503 too, which still tells the client to come back later.
  return 'query' in e || (typeof e.syscall === 'string' && CONNECT_SYSCALLS.has(e.syscall));
}

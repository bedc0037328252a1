import type { Database } from '@steward/db/database';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics: HTTP by route and status, the database pool, and the process. */
export function installMetrics(app: FastifyInstance, db: Database): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'steward_' });
  const http = new Histogram({
    name: 'steward_http_request_duration_seconds',
    help: 'HTTP request duration by method, route and status',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const pool = (name: string, help: string, pick: (s: ReturnType<Database['stats']>) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(db.stats()));
      },
    });
  pool('steward_db_pool_max', 'Largest number of runtime database connections', (s) => s.max);
  pool('steward_db_pool_in_use', 'Runtime database connections in a transaction now', (s) => s.inUse);
  pool('steward_db_pool_waiting', 'Transactions waiting for a connection', (s) => s.waiting);

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    http.observe(
      { method: request.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  return registry;
}

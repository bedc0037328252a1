import type { Database } from '@steward/db/database';
import type { PageCache, PageCacheStats } from '@steward/core/cache/page-cache';
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** Prometheus metrics: HTTP by route and status, the database pool, the page cache, and the process. */
export function installMetrics(
  app: FastifyInstance,
  db: Database,
  pages: () => PageCache | undefined = () => undefined,
): Registry {
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
  const cache = (name: string, help: string, pick: (s: PageCacheStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const stats = pages()?.stats();
        if (stats) this.set(pick(stats));
      },
    });
  cache('steward_page_cache_entries', 'List pages in the page cache', (s) => s.entries);
  cache('steward_page_cache_bytes', 'Bytes of list pages in the page cache', (s) => s.bytes);
  cache('steward_page_cache_live', '1 while the page cache receives invalidations (else bypassed)', (s) =>
    s.live ? 1 : 0,
  );
  cache('steward_page_cache_hits', 'Pages answered from the page cache since start', (s) => s.hits);
  cache('steward_page_cache_misses', 'Pages built (not in the cache) since start', (s) => s.misses);
  cache(
    'steward_page_cache_bypassed',
    'Pages built while the cache was bypassed since start',
    (s) => s.bypassed,
  );
  cache(
    'steward_page_cache_refused',
    'Pages not stored: changed during their build, since start',
    (s) => s.refused,
  );
  cache(
    'steward_page_cache_invalidations',
    'Tenant invalidations received since start',
    (s) => s.invalidations,
  );

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    http.observe(
      { method: request.method, route, status_code: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });
  return registry;
}

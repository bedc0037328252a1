import type { FastifyInstance } from 'fastify';
import type { Access } from './access.ts';

/** One registered route with the access it declares (undefined: none, so denied by default). */
export interface RouteRecord {
  method: string;
  url: string;
  access: Access | undefined;
}

declare module 'fastify' {
  interface FastifyInstance {
    /** Every route of the app, as registered; tests walk it (access declared, tenant isolation, audit). */
    routeTable: readonly RouteRecord[];
  }
}

/** Record every route registered from now on. Install before the routes. */
export function installRouteTable(app: FastifyInstance): void {
  const table: RouteRecord[] = [];
  app.decorate('routeTable', table);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) {
      table.push({ method: String(method), url: route.url, access: route.config?.access });
    }
  });
}

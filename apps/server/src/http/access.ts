import type { Permission } from '@steward/core/identity/permissions';
import type { Principal } from '@steward/core/identity/authenticator';

/**
 * What a route requires. Every route under /api/v1 declares one in `config.access`; a route
 * without it is refused (default deny), and a test walks the route table to keep it that way.
 */
export type Access = Permission | 'public' | 'authenticated' | 'session' | 'platform-admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | undefined;
  }
}

export function isPublic(access: Access | undefined): boolean {
  return access === 'public';
}

import type { FastifyRequest } from 'fastify';
import type { Actor } from '@steward/core/resources';
import type { Principal } from '@steward/core/identity/authenticator';
import { unauthenticated } from '@steward/core/errors/app-error';

/** The audit actor of a request: who, from where, under which request id. */
export function actorOf(request: FastifyRequest): Actor {
  const p = request.principal;
  return {
    type: p ? (p.kind === 'user' ? 'user' : 'api_key') : 'anonymous',
    id: p ? (p.kind === 'user' ? p.userId : p.apiKeyId) : undefined,
    label: p?.label,
    requestId: String(request.id),
    ip: request.ip,
  };
}

export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw unauthenticated();
  return request.principal;
}

export function requestInfo(request: FastifyRequest) {
  return {
    requestId: String(request.id),
    ip: request.ip,
    userAgent: request.headers['user-agent'],
  };
}

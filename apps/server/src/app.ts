import { randomUUID } from 'node:crypto';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import helmet from 'helmet';
import type { Resources } from '@steward/core/resources';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { installAuthentication } from './http/authenticate.ts';
import { frameworkError, installErrorHandling } from './http/error-handler.ts';
import { installFiniteNumbers } from './http/finite-numbers.ts';
import { installGuard } from './http/guard-hooks.ts';
import { installGuardResponses } from './http/guard-responses.ts';
import { lazyChildLogger } from './http/lazy-request-logger.ts';
import { installMetrics } from './http/metrics.ts';
import { installRouteTable } from './http/route-table.ts';
import { installUnavailableResponses } from './http/unavailable-responses.ts';
import { ErrorResponse } from './http/schemas.ts';
import { apiKeyRoutes } from './routes/api-key-routes.ts';
import { approvalRoutes } from './routes/approval-routes.ts';
import { briefingRoutes } from './routes/briefing-routes.ts';
import { playbookRoutes } from './routes/playbook-routes.ts';
import { connectionRoutes } from './routes/connection-routes.ts';
import { mcpRoutes } from './routes/mcp-routes.ts';
import { taskRoutes } from './routes/task-routes.ts';
import { auditRoutes } from './routes/audit-routes.ts';
import { usageRoutes } from './routes/usage-routes.ts';
import { authRoutes } from './routes/auth-routes.ts';
import { roleRoutes } from './routes/role-routes.ts';
import { systemRoutes } from './routes/system-routes.ts';
import { tenantRoutes } from './routes/tenant-routes.ts';
import { userRoutes } from './routes/user-routes.ts';
import { inboundHookRoutes, webhookRoutes } from './routes/webhook-routes.ts';
import { scheduleRoutes } from './routes/schedule-routes.ts';
import { guardRoutes } from './routes/guard-routes.ts';
import { mfaRoutes } from './routes/mfa-routes.ts';
import { passkeyRoutes } from './routes/passkey-routes.ts';
import { sessionRoutes } from './routes/session-routes.ts';
import { ssoRoutes } from './routes/sso-routes.ts';
import { scimAdminRoutes, scimRoutes } from './routes/scim-routes.ts';
import { exportRoutes } from './routes/export-routes.ts';
import { erasureRoutes } from './routes/erasure-routes.ts';
import { consentRoutes } from './routes/consent-routes.ts';
import { retentionRoutes } from './routes/retention-routes.ts';
import { siemRoutes } from './routes/siem-routes.ts';
import { reportRoutes } from './routes/report-routes.ts';
import { liveRoutes } from './routes/live-routes.ts';
import { pushRoutes } from './routes/push-routes.ts';
import { invitationRoutes } from './routes/invitation-routes.ts';
import { healthRoutes } from './routes/health-routes.ts';
import { webRoutes } from './routes/web-routes.ts';

export interface AppOptions {
  bodyLimit?: number;
  /** STEWARD_TRUST_PROXY: false, a hop count, or proxy addresses/CIDRs. */
  trustProxy?: boolean | number | string[];
  /** Serve HTTPS natively (and send HSTS). */
  https?: { cert: Buffer; key: Buffer } | undefined;
  /** A pino logger; without one the app does not log. */
  logger?: FastifyBaseLogger;
  /** Migration version the code expects (for /readyz). */
  expectedSchemaVersion: number;
  /** The built web dashboard (default apps/web/dist). */
  webDir?: string;
}

export { REDACT_PATHS } from './http/redact-paths.ts';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** Build the HTTP application. Listening is main's job, so tests use app.inject(). */
export async function buildApp(res: Resources, opts: AppOptions): Promise<FastifyInstance> {
  // Typed as the plain HTTP server: Fastify's handlers and hooks are the same over HTTPS.
  const tlsOptions: object = opts.https ? { https: { cert: opts.https.cert, key: opts.https.key } } : {};
  const app = Fastify({
    ...tlsOptions,
    ...(opts.logger
      ? { loggerInstance: opts.logger, childLoggerFactory: lazyChildLogger }
      : { logger: false }),
    bodyLimit: opts.bodyLimit ?? 1_048_576,
    trustProxy: trustProxyOption(opts.trustProxy),
    requestIdHeader: false,
    genReqId: (req) => {
      const incoming = req.headers['x-request-id'];
      return typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    },
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: true, useDefaults: true, allErrors: false },
    },
    return503OnClosing: true,
    frameworkErrors: frameworkError,
    forceCloseConnections: 'idle',
  });
  installRouteTable(app);
  installGuardResponses(app);
  installUnavailableResponses(app);
  // JSON only: Fastify also parses text/plain by default, a type a cross-site form can send.
  app.removeContentTypeParser('text/plain');
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addSchema(ErrorResponse);
  installErrorHandling(app);
  installFiniteNumbers(app);
  // Security headers. helmet's middleware is built once here: @fastify/helmet rebuilt it on every
  // request (~40 µs each, measured in bench/).
  const securityHeaders = helmet({
    contentSecurityPolicy: {
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:'],
        frameAncestors: ["'none'"],
        // Plain-HTTP local installations must keep working: upgrade (and HSTS) only when serving TLS.
        upgradeInsecureRequests: opts.https ? [] : null,
      },
    },
    // HSTS only when this process serves HTTPS itself (STEWARD_TLS_CERT / STEWARD_TLS_KEY).
    hsts: opts.https ? { maxAge: 31_536_000, includeSubDomains: true } : false,
    xFrameOptions: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
  });
  app.addHook('onRequest', (request, reply, done) =>
    securityHeaders(request.raw, reply.raw, (error) => done(error as Error | undefined)),
  );
  const metrics = installMetrics(app, res.db, () => res.pages);
  installGuard(app, res);
  installAuthentication(app, res);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Steward API', version: '0.1.0', description: 'Multi-tenant AI employee platform' },
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'An access token (JWT) or an API key (stw_...)',
          },
        },
      },
      security: [{ bearer: [] }],
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: false });

  await app.register(systemRoutes(res, metrics, opts.expectedSchemaVersion));
  await app.register(inboundHookRoutes(res));
  await app.register(
    async (api) => {
      await api.register(authRoutes(res));
      await api.register(tenantRoutes(res));
      await api.register(userRoutes(res));
      await api.register(roleRoutes(res));
      await api.register(apiKeyRoutes(res));
      await api.register(auditRoutes(res));
      await api.register(usageRoutes(res));
      await api.register(taskRoutes(res));
      await api.register(approvalRoutes(res));
      await api.register(briefingRoutes(res));
      await api.register(playbookRoutes(res));
      await api.register(webhookRoutes(res));
      await api.register(scheduleRoutes(res));
      await api.register(connectionRoutes(res));
      await api.register(mcpRoutes(res));
      await api.register(guardRoutes(res));
      await api.register(mfaRoutes(res));
      await api.register(passkeyRoutes(res));
      await api.register(sessionRoutes(res));
      await api.register(ssoRoutes(res));
      await api.register(scimAdminRoutes(res));
      await api.register(exportRoutes(res));
      await api.register(erasureRoutes(res));
      await api.register(consentRoutes(res));
      await api.register(retentionRoutes(res));
      await api.register(siemRoutes(res));
      await api.register(reportRoutes(res));
      await api.register(liveRoutes(res));
      await api.register(pushRoutes(res));
      await api.register(invitationRoutes(res));
      await api.register(healthRoutes(res));
    },
    { prefix: '/api/v1' },
  );
  await app.register(scimRoutes(res), { prefix: '/scim/v2' });
  await app.register(webRoutes(opts.webDir));
  return app;
}

/** A hop count as the function Fastify's types expect (the n nearest peers are proxies). */
function trustProxyOption(value: AppOptions['trustProxy']) {
  if (typeof value !== 'number') return value ?? false;
  return (_address: string, hop: number) => hop < value;
}

import { AppError, ERROR_STATUS, type ErrorCode } from '@steward/core/errors/app-error';
import { isDatabaseUnavailable } from '@steward/core/errors/database-unavailable';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: Record<string, unknown> };
}

export function sendError(
  reply: FastifyReply,
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
) {
  const body: ErrorBody = { error: { code, message, requestId: String(reply.request.id) } };
  if (details) body.error.details = details;
  return reply.code(ERROR_STATUS[code]).type('application/json; charset=utf-8').send(body);
}

/** Seconds a client is asked to wait before it sends a request again while the database is unavailable. */
export const DATABASE_RETRY_AFTER_SECONDS = 2;
export const DATABASE_UNAVAILABLE_MESSAGE = 'the database is unavailable; try again shortly';

/**
 * Before answering 503 for an error isDatabaseUnavailable accepts: log it once, at warn and with
 * its code only (its message and statement may hold a query's values), and set Retry-After.
 * Nothing is half-written: the request's transaction rolled back, or, when the connection broke
 * while COMMIT was answered, committed whole; a retry of an idempotent request (an event with an
 * externalId) then answers the same result.
 */
export function noteDatabaseUnavailable(request: FastifyRequest, reply: FastifyReply, error: unknown): void {
  const code = (error as { code?: unknown }).code;
  request.log.warn({ code: typeof code === 'string' ? code : undefined }, 'database unavailable');
  reply.header('retry-after', String(DATABASE_RETRY_AFTER_SECONDS));
}

const FASTIFY_CODES: Record<string, { code: ErrorCode; message?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE', message: 'request body is too large' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: {
    code: 'BAD_REQUEST',
    message: 'content-length does not match the body',
  },
  FST_ERR_CTP_EMPTY_JSON_BODY: {
    code: 'BAD_REQUEST',
    message: 'body is empty but content-type is application/json',
  },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'BAD_REQUEST', message: 'body is not valid JSON' },
};

/** One error shape for every failure; internals never reach the client. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    if (error instanceof AppError) {
      const retryAfter = error.details?.retryAfterSeconds;
      if (error.code === 'RATE_LIMITED' && typeof retryAfter === 'number')
        reply.header('retry-after', String(retryAfter));
      if (error.status >= 500) request.log.error({ err: error }, 'request failed');
      return sendError(reply, error.code, error.message, error.details);
    }
    if (isDatabaseUnavailable(error)) {
      noteDatabaseUnavailable(request, reply, error);
      return sendError(reply, 'UNAVAILABLE', DATABASE_UNAVAILABLE_MESSAGE, {
        retryAfterSeconds: DATABASE_RETRY_AFTER_SECONDS,
      });
    }
    if (error.validation) {
      const first = error.validation[0];
      const where = `${error.validationContext ?? 'request'}${first?.instancePath ?? ''}`;
      let message = `${where} ${first?.message ?? 'is invalid'}`;
      const params = first?.params as { additionalProperty?: string; missingProperty?: string } | undefined;
      if (params?.additionalProperty)
        message = `${where}/${params.additionalProperty} is not an allowed field`;
      if (params?.missingProperty) message = `${where}/${params.missingProperty} is required`;
      return sendError(reply, 'VALIDATION_FAILED', message);
    }
    const known = error.code ? FASTIFY_CODES[error.code] : undefined;
    if (known) return sendError(reply, known.code, known.message ?? error.message);
    if (error.statusCode === 400 && error.code?.startsWith('FST_ERR_CTP')) {
      return sendError(reply, 'BAD_REQUEST', 'the request body could not be read');
    }
    if (error.statusCode === 429) return sendError(reply, 'RATE_LIMITED', 'too many requests');
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      request.log.info({ code: error.code }, 'client error');
      return sendError(reply, 'BAD_REQUEST', 'the request could not be processed');
    }
    // PostgreSQL "data exception" (class 22): a value it cannot store, such as a NUL character.
    const pgCode = (error as { code?: unknown }).code;
    if ((error as Error).name === 'PostgresError' && typeof pgCode === 'string' && pgCode.startsWith('22')) {
      request.log.info({ code: pgCode }, 'value rejected by the database');
      return sendError(
        reply,
        'VALIDATION_FAILED',
        'a value cannot be stored (for example it contains a NUL character)',
      );
    }
    request.log.error({ err: error }, 'unhandled error');
    return sendError(reply, 'INTERNAL', 'internal error; quote the request id when reporting it');
  });
  app.setNotFoundHandler((request, reply) =>
    sendError(reply, 'NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );
}

/** Errors the router raises before any hook (a malformed URL, an over-long path parameter): same shape. */
export function frameworkError(error: FastifyError, _request: FastifyRequest, reply: FastifyReply) {
  const message =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? 'a path parameter is too long'
      : error.code === 'FST_ERR_BAD_URL'
        ? 'the URL is malformed'
        : 'the request could not be routed';
  return sendError(reply, 'BAD_REQUEST', message);
}

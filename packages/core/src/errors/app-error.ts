/** Stable error codes and the HTTP status each one maps to: the only table of its kind. */
export const ERROR_STATUS = {
  VALIDATION_FAILED: 400,
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  /** The tenant's IP allow-list does not include the caller's address. */
  IP_NOT_ALLOWED: 403,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** Safe, client-facing details (never secrets). */
  readonly details: Record<string, unknown> | undefined;
  /** Jobs retry only errors marked retryable. */
  readonly retryable: boolean;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { details?: Record<string, unknown>; retryable?: boolean; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.details = opts.details;
    this.retryable = opts.retryable ?? false;
  }
}

export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);
export const forbidden = (message = 'you do not have permission to do this') =>
  new AppError('FORBIDDEN', message);
export const conflict = (message: string) => new AppError('CONFLICT', message);
export const unauthenticated = (message = 'authentication required') =>
  new AppError('UNAUTHENTICATED', message);
export const invalid = (message: string) => new AppError('VALIDATION_FAILED', message);

/** Map a PostgreSQL error to a stable code, keeping its text (which may hold values) out of messages. */
export function fromDatabaseError(error: unknown, what = 'record'): AppError | undefined {
  const code = (error as { code?: unknown })?.code;
  if (code === '23505') return conflict(`${what} already exists`);
  if (code === '23503') return invalid(`${what} refers to something that does not exist`);
  if (code === '22P02' || code === '22007' || code === '22008')
    return invalid(`${what} has a malformed value`);
  if (code === '23514') return invalid(`${what} has a value that is not allowed`);
  return undefined;
}

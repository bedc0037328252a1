import type { FastifyBaseLogger } from 'fastify';

type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
type LogFn = (...args: unknown[]) => void;

/**
 * Fastify's `childLoggerFactory`: the per-request child logger (which adds the request id) is made
 * only when the request logs something at an enabled level. pino's `child()` copies the bindings
 * and sets up the redaction of the child: ~3 % of the server's CPU per request where most requests
 * log nothing (LOG_LEVEL=warn, measured in bench/RESULTS.md). What is logged is unchanged.
 */
export function lazyChildLogger(
  logger: FastifyBaseLogger,
  bindings: Record<string, unknown>,
  opts: object,
): FastifyBaseLogger {
  // A route with its own log level (or other child options): the plain child, at once.
  if (opts && Object.keys(opts).length > 0) return logger.child(bindings, opts);
  return new LazyChildLogger(logger, bindings) as unknown as FastifyBaseLogger;
}

class LazyChildLogger {
  readonly #parent: FastifyBaseLogger;
  readonly #bindings: Record<string, unknown>;
  #child: FastifyBaseLogger | undefined;

  constructor(parent: FastifyBaseLogger, bindings: Record<string, unknown>) {
    this.#parent = parent;
    this.#bindings = bindings;
  }

  get level(): string {
    return (this.#child ?? this.#parent).level;
  }

  set level(level: string) {
    this.#real().level = level;
  }

  child(bindings: Record<string, unknown>, opts?: object): FastifyBaseLogger {
    return this.#real().child(bindings, opts);
  }

  trace(...args: unknown[]): void {
    this.#log('trace', args);
  }
  debug(...args: unknown[]): void {
    this.#log('debug', args);
  }
  info(...args: unknown[]): void {
    this.#log('info', args);
  }
  warn(...args: unknown[]): void {
    this.#log('warn', args);
  }
  error(...args: unknown[]): void {
    this.#log('error', args);
  }
  fatal(...args: unknown[]): void {
    this.#log('fatal', args);
  }
  silent(): void {}

  #log(level: Level, args: unknown[]): void {
    if (!this.#child) {
      const enabled = (this.#parent as { isLevelEnabled?: (l: string) => boolean }).isLevelEnabled;
      if (enabled && !enabled.call(this.#parent, level)) return;
    }
    const real = this.#real();
    (real[level] as LogFn).apply(real, args);
  }

  #real(): FastifyBaseLogger {
    return (this.#child ??= this.#parent.child(this.#bindings));
  }
}

import { isIP } from 'node:net';
import { Type } from '@sinclair/typebox';
import {
  ConnectionUnavailableError,
  EMAIL_PATTERN,
  resolveConnection,
  type ResolvedConnection,
  type SmtpConfig,
} from '../../connections/connection-service.ts';
import { SecretUnreadableError, type CredentialVault } from '../../secrets/envelope.ts';
import { recordUse } from '../../connections/connection-health.ts';
import { ToolError, type Tool } from '../tool.ts';
import {
  AddressBlockedError,
  HostUnresolvedError,
  resolveChecked,
  tenantAllowsPrivateNetwork,
  type Resolver,
} from './network-guard.ts';

export interface EmailArgs {
  to: string | string[];
  cc?: string | string[];
  bcc?: string | string[];
  subject: string;
  text: string;
  html?: string;
  /** The tenant's smtp connection to send through (default: the tenant's default smtp connection). */
  connection?: string;
}

export interface EmailToolOptions {
  vault: CredentialVault;
  resolve?: Resolver;
  /** Seconds to wait for the connection, the greeting and each reply. */
  timeoutSeconds?: number;
}

const Address = Type.String({ maxLength: 320, pattern: EMAIL_PATTERN });
const Addresses = Type.Union([Address, Type.Array(Address, { minItems: 1, maxItems: 50 })]);

const list = (v: string | string[] | undefined): string[] =>
  v === undefined ? [] : Array.isArray(v) ? v : [v];

/** The idempotency key as it appears in headers (it is ours, but never trust a header value blindly). */
const headerSafe = (key: string) => key.replace(/[^A-Za-z0-9._-]/g, '').slice(0, 200);

/** Connection and greeting problems and 4xx replies are worth trying again; 5xx replies are final. */
export function smtpErrorToToolError(error: unknown): ToolError {
  const e = error as { code?: string; responseCode?: number; response?: string; command?: string };
  const reply = typeof e.response === 'string' ? e.response.replace(/[\r\n]+/g, ' ').slice(0, 300) : '';
  if (typeof e.responseCode === 'number') {
    const transient = e.responseCode >= 400 && e.responseCode < 500;
    return new ToolError(
      transient ? 'SMTP_DEFERRED' : 'SMTP_REJECTED',
      `the SMTP server answered ${e.responseCode}${e.command ? ` to ${e.command}` : ''}${reply ? `: ${reply}` : ''}`,
      { retryable: transient },
    );
  }
  const code = e.code ?? 'ERROR';
  if (['ECONNECTION', 'ETIMEDOUT', 'ESOCKET', 'EDNS', 'ECONNRESET', 'ECONNREFUSED'].includes(code))
    return new ToolError('SMTP_CONNECTION_FAILED', `could not talk to the SMTP server (${code})`, {
      retryable: true,
    });
  if (code === 'EAUTH')
    return new ToolError('SMTP_AUTH_FAILED', 'the SMTP server did not accept the credentials');
  if (code === 'ETLS')
    return new ToolError('SMTP_TLS_FAILED', 'TLS with the SMTP server failed', { retryable: false });
  return new ToolError('SMTP_FAILED', `sending failed (${code})`);
}

/** Send an e-mail through one of the tenant's SMTP connections. */
export function emailTool(opts: EmailToolOptions): Tool<EmailArgs> {
  return {
    name: 'email.send',
    description: "Send an e-mail through the tenant's SMTP connection",
    risk: 'medium',
    retryable: true,
    args: Type.Object(
      {
        to: Addresses,
        cc: Type.Optional(Addresses),
        bcc: Type.Optional(Addresses),
        subject: Type.String({ minLength: 1, maxLength: 998, pattern: '^[^\\r\\n]*$' }),
        text: Type.String({ maxLength: 1_000_000 }),
        html: Type.Optional(Type.String({ maxLength: 2_000_000 })),
        connection: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
      },
      { additionalProperties: false },
    ),
    recipients: (a) => [...list(a.to), ...list(a.cc), ...list(a.bcc)].map((r) => r.toLowerCase()),
    preview: (a) => {
      const all = [...list(a.to), ...list(a.cc), ...list(a.bcc)];
      return [
        { kind: 'email.send', summary: `send "${a.subject}" to ${all.join(', ')}`, target: all.join(', ') },
      ];
    },
    async execute(ctx, a) {
      let connection: ResolvedConnection<SmtpConfig>;
      try {
        connection = await ctx.withTenant((tx) =>
          resolveConnection(opts.vault, tx, ctx.tenantId, 'smtp', a.connection),
        );
      } catch (e) {
        if (e instanceof ConnectionUnavailableError) throw new ToolError('CONNECTION_UNAVAILABLE', e.message);
        if (e instanceof SecretUnreadableError)
          throw new ToolError('CONNECTION_SECRET_UNREADABLE', e.message);
        throw e;
      }
      const cfg = connection.config;
      const used = { table: 'connections', id: connection.id } as const;
      const allowPrivate = cfg.allowPrivateNetwork === true || (await tenantAllowsPrivateNetwork(ctx));
      let address: string;
      try {
        address = (await resolveChecked(cfg.host, { allowPrivate, resolve: opts.resolve })).address;
      } catch (e) {
        const failure =
          e instanceof AddressBlockedError
            ? new ToolError('ADDRESS_BLOCKED', e.message)
            : e instanceof HostUnresolvedError
              ? new ToolError('HOST_UNRESOLVED', e.message, { retryable: e.temporary })
              : undefined;
        if (!failure) throw e;
        await recordUse(ctx.withTenant, ctx.tenantId, used, failure);
        throw failure;
      }
      const host = cfg.host.replace(/^\[|\]$/g, '');
      const seconds = (opts.timeoutSeconds ?? 30) * 1000;
      // Connect to the checked address; TLS still verifies the configured host name.
      const { default: nodemailer } = await import('nodemailer');
      const transport = nodemailer.createTransport({
        host: address,
        port: cfg.port ?? (cfg.secure ? 465 : 587),
        secure: cfg.secure ?? cfg.port === 465,
        requireTLS: cfg.requireTls ?? false,
        ...(isIP(host) ? {} : { servername: host, tls: { servername: host } }),
        ...(cfg.username ? { auth: { user: cfg.username, pass: connection.secret ?? '' } } : {}),
        connectionTimeout: seconds,
        greetingTimeout: seconds,
        socketTimeout: seconds,
        dnsTimeout: seconds,
        disableFileAccess: true,
        disableUrlAccess: true,
      });
      const abort = () => transport.close();
      ctx.signal.addEventListener('abort', abort, { once: true });
      const key = headerSafe(ctx.idempotencyKey);
      const domain = cfg.from.split('@')[1] ?? 'steward.invalid';
      try {
        const info = await transport.sendMail({
          from: cfg.fromName ? { name: cfg.fromName, address: cfg.from } : cfg.from,
          to: list(a.to),
          cc: list(a.cc),
          bcc: list(a.bcc),
          subject: a.subject,
          text: a.text,
          ...(a.html !== undefined ? { html: a.html } : {}),
          // The same step always makes the same Message-ID: receivers can drop a repeated delivery.
          messageId: `<${key}@${domain}>`,
          headers: { 'X-Steward-Idempotency-Key': key },
        });
        if (ctx.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
        await recordUse(ctx.withTenant, ctx.tenantId, used);
        return {
          messageId: info.messageId,
          accepted: (info.accepted ?? []).map(String),
          rejected: (info.rejected ?? []).map(String),
          connection: connection.name,
        };
      } catch (e) {
        if (ctx.signal.aborted) throw Object.assign(new Error('aborted'), { name: 'AbortError' });
        const failure = e instanceof ToolError ? e : smtpErrorToToolError(e);
        await recordUse(ctx.withTenant, ctx.tenantId, used, failure, [connection.secret]);
        throw failure;
      } finally {
        ctx.signal.removeEventListener('abort', abort);
        transport.close();
      }
    },
  };
}

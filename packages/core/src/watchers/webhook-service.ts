import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { isUuid } from '@steward/db/database';
import { AppError, conflict, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { decodeCursor, encodeCursor, type Page } from '../shared/cursor.ts';
import { submitEvent, type Intake } from '../tasks/task-service.ts';

/**
 * Inbound webhooks: `POST /hooks/:tenantSlug/:hookId`, authenticated by the hook's secret, either
 * as `Authorization: Bearer <secret>` or as a signature
 * `X-Steward-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` within a
 * 5-minute window; a signature is accepted once (replays are refused).
 *
 * No secret is stored: a hook's secret is derived from the master key, the tenant and the hook id,
 * and shown once, when the hook is created.
 */

export const SIGNATURE_HEADER = 'x-steward-signature';
export const SIGNATURE_WINDOW_SECONDS = 300;

export interface WebhookView {
  id: string;
  name: string;
  /** The path to POST to (after the installation's base URL). */
  path: string;
  lastReceivedAt: string | null;
  createdAt: string;
}

interface Row {
  id: string;
  name: string;
  last_received_at: Date | null;
  created_at: Date;
}

const toView = (slug: string, r: Row): WebhookView => ({
  id: r.id,
  name: r.name,
  path: `/hooks/${slug}/${r.id}`,
  lastReceivedAt: r.last_received_at?.toISOString() ?? null,
  createdAt: r.created_at.toISOString(),
});

/**
 * The secret of one hook (deterministic: the same master key, tenant, hook and version give the same
 * secret). Version 1 is the original derivation; each rotation moves to the next version.
 */
export function webhookSecret(
  res: Pick<Resources, 'master'>,
  tenantId: string,
  hookId: string,
  version = 1,
): string {
  const label = version === 1 ? `webhook:${tenantId}:${hookId}` : `webhook:${tenantId}:${hookId}:v${version}`;
  return 'whsec_' + res.master.derive(label).toString('base64url');
}

/** The longest a rotated-out secret may keep working (7 days). */
export const MAX_ROTATION_GRACE_SECONDS = 7 * 24 * 3600;

/** The signature header value a sender computes (also what tests and the docs use). */
export function signWebhook(secret: string, timestamp: number, rawBody: Buffer | string): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

export type SignatureCheck =
  { ok: true; signature: string } | { ok: false; reason: 'malformed' | 'expired' | 'mismatch' };

/** Check a signature header against the raw body (constant-time compare, ±5 minutes). */
export function verifySignature(
  secret: string,
  header: string,
  rawBody: Buffer,
  nowSeconds: number,
): SignatureCheck {
  let t: number | undefined;
  const v1: string[] = [];
  for (const part of header.split(',').slice(0, 10)) {
    const [k, v] = part.trim().split('=', 2);
    if (k === 't' && v && /^\d{1,12}$/.test(v)) t = Number(v);
    if (k === 'v1' && v && /^[0-9a-f]{64}$/i.test(v)) v1.push(v.toLowerCase());
  }
  if (t === undefined || !v1.length) return { ok: false, reason: 'malformed' };
  if (Math.abs(nowSeconds - t) > SIGNATURE_WINDOW_SECONDS) return { ok: false, reason: 'expired' };
  const expected = createHmac('sha256', secret).update(`${t}.`).update(rawBody).digest();
  for (const candidate of v1) {
    if (timingSafeEqual(expected, Buffer.from(candidate, 'hex'))) return { ok: true, signature: candidate };
  }
  return { ok: false, reason: 'mismatch' };
}

/** Constant-time comparison of a presented bearer secret with the hook's (hashes make lengths equal). */
export function secretMatches(presented: string, secret: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(secret).digest();
  return timingSafeEqual(a, b);
}

async function tenantSlug(res: Resources, tenantId: string): Promise<string> {
  const [t] = await res.db.withTenant(
    tenantId,
    (tx) => tx<{ slug: string }[]>`select slug from tenants where id = ${tenantId}`,
  );
  if (!t) throw notFound('tenant');
  return t.slug;
}

export async function listWebhooks(
  res: Resources,
  tenantId: string,
  q: { limit: number; cursor?: string | undefined },
): Promise<Page<WebhookView>> {
  const after = decodeCursor(q.cursor, ['name']);
  const slug = await tenantSlug(res, tenantId);
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<Row[]>`
      select id, name, last_received_at, created_at from webhooks where tenant_id = ${tenantId}
        ${after ? tx`and name > ${after.name}` : tx``}
      order by name limit ${q.limit + 1}`;
    const items = rows.slice(0, q.limit).map((r) => toView(slug, r));
    const last = items.at(-1);
    return { items, nextCursor: rows.length > q.limit && last ? encodeCursor({ name: last.name }) : null };
  });
}

/** Create a hook; its secret is returned here and never again. */
export async function createWebhook(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { name: string },
): Promise<WebhookView & { secret: string }> {
  const slug = await tenantSlug(res, tenantId);
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<Row[]>`
      insert into webhooks (tenant_id, name, created_by_type, created_by_id)
      values (${tenantId}, ${input.name}, ${actor.type}, ${actor.id ?? null})
      on conflict (tenant_id, name) do nothing
      returning id, name, last_received_at, created_at`;
    if (!row) throw conflict(`a webhook named "${input.name}" already exists`);
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'webhook.created',
      targetType: 'webhook',
      targetId: row.id,
      details: { name: input.name },
    });
    return { ...toView(slug, row), secret: webhookSecret(res, tenantId, row.id) };
  });
}

/**
 * Give a hook a new secret (returned here and never again). The previous one keeps working for
 * `graceSeconds` (default a day; 0 ends it at once), so senders can switch without losing deliveries.
 */
export async function rotateWebhookSecret(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
  input: { graceSeconds?: number | undefined },
): Promise<WebhookView & { secret: string; previousValidUntil: string | null }> {
  const grace = input.graceSeconds ?? 24 * 3600;
  if (!Number.isInteger(grace) || grace < 0 || grace > MAX_ROTATION_GRACE_SECONDS)
    throw invalid(`body/graceSeconds must be an integer from 0 to ${MAX_ROTATION_GRACE_SECONDS}`);
  const slug = await tenantSlug(res, tenantId);
  return res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<(Row & { secret_version: number; previous_valid_until: Date | null })[]>`
      update webhooks set secret_version = secret_version + 1,
        previous_valid_until = ${grace > 0 ? tx`now() + make_interval(secs => ${grace})` : tx`null`}
      where tenant_id = ${tenantId} and id = ${id}
      returning id, name, last_received_at, created_at, secret_version, previous_valid_until`;
    if (!row) throw notFound('webhook');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'webhook.secret_rotated',
      targetType: 'webhook',
      targetId: id,
      details: { name: row.name, version: row.secret_version, graceSeconds: grace },
    });
    return {
      ...toView(slug, row),
      secret: webhookSecret(res, tenantId, id, row.secret_version),
      previousValidUntil: row.previous_valid_until?.toISOString() ?? null,
    };
  });
}

export async function deleteWebhook(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<
      { name: string }[]
    >`delete from webhooks where tenant_id = ${tenantId} and id = ${id} returning name`;
    if (!row) throw notFound('webhook');
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'webhook.deleted',
      targetType: 'webhook',
      targetId: id,
      details: { name: row.name },
    });
  });
}

export interface Delivery {
  tenantSlug: string;
  hookId: string;
  /** The Authorization header, if any. */
  authorization?: string | undefined;
  /** The X-Steward-Signature header, if any. */
  signature?: string | undefined;
  /** X-Steward-Event-Id or Idempotency-Key. */
  eventIdHeader?: string | undefined;
  contentType?: string | undefined;
  rawBody: Buffer;
  requestId?: string | undefined;
  ip?: string | undefined;
  nowSeconds?: number;
}

const unauthorized = (message: string) => new AppError('UNAUTHENTICATED', message);
/** Unknown tenant, suspended tenant, unknown hook, malformed id: one answer for all. */
const noSuchHook = () => notFound('webhook');

const str = (v: unknown, max: number): string | undefined =>
  typeof v === 'string' && v.length > 0 ? v.slice(0, max) : undefined;

/** Map a delivery's JSON body to an event. */
export function webhookEvent(
  hook: { id: string; name: string },
  payload: Record<string, unknown>,
  eventIdHeader: string | undefined,
) {
  if (payload.type !== undefined) {
    if (typeof payload.type !== 'string' || !/^\S.{0,99}$/s.test(payload.type)) {
      throw invalid('body/type must be a string of 1 to 100 characters');
    }
  }
  let id: string | undefined;
  const rawId = payload.id ?? eventIdHeader;
  if (rawId !== undefined) {
    if ((typeof rawId !== 'string' && typeof rawId !== 'number') || String(rawId).length === 0) {
      throw invalid('body/id must be a non-empty string or number');
    }
    id = String(rawId);
    if (id.length > 200) throw invalid('the event id must be at most 200 characters');
  }
  const data =
    payload.data && typeof payload.data === 'object' && !Array.isArray(payload.data)
      ? (payload.data as Record<string, unknown>)
      : payload;
  return {
    source: 'webhook',
    type: (payload.type as string | undefined) ?? 'webhook',
    // Scoped by hook: two senders both numbering their events from 1 do not collide.
    externalId: id === undefined ? undefined : `${hook.id}:${id}`,
    from: str(payload.from, 500) ?? `webhook:${hook.name}`,
    subject: str(payload.subject, 1000) ?? str(payload.title, 1000),
    body: str(payload.body, 500_000) ?? str(payload.text, 500_000) ?? str(payload.message, 500_000),
    data: { ...data, webhook: { id: hook.id, name: hook.name } },
  };
}

/** Authenticate one delivery and submit its event. */
export async function receiveWebhook(res: Resources, d: Delivery): Promise<Intake> {
  if (!isUuid(d.hookId) || !/^[a-z0-9][a-z0-9-]{1,62}$/.test(d.tenantSlug)) throw noSuchHook();
  const [tenant] = await res.db.withSystemAccess(
    (tx) => tx<{ id: string }[]>`select id from tenants where slug = ${d.tenantSlug} and status = 'active'`,
  );
  if (!tenant) throw noSuchHook();
  const tenantId = tenant.id;
  const [hook] = await res.db.withTenant(
    tenantId,
    (tx) => tx<{ id: string; name: string; secret_version: number; previous_valid: boolean }[]>`
      select id, name, secret_version, coalesce(previous_valid_until > now(), false) as previous_valid
      from webhooks where tenant_id = ${tenantId} and id = ${d.hookId}`,
  );
  if (!hook) throw noSuchHook();

  // The current secret, and during a rotation's grace period the previous one.
  const secrets = [webhookSecret(res, tenantId, hook.id, hook.secret_version)];
  if (hook.previous_valid) secrets.push(webhookSecret(res, tenantId, hook.id, hook.secret_version - 1));
  let usedSignature: string | undefined;
  if (d.authorization !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(d.authorization);
    if (!m || !secrets.some((secret) => secretMatches(m[1]!, secret)))
      throw unauthorized('the webhook secret is not valid');
  } else if (d.signature !== undefined) {
    const now = d.nowSeconds ?? Math.floor(Date.now() / 1000);
    const checks = secrets.map((secret) => verifySignature(secret, d.signature!, d.rawBody, now));
    const check = checks.find((c) => c.ok) ?? checks[0]!;
    if (!check.ok) {
      throw unauthorized(
        check.reason === 'expired'
          ? 'the signature timestamp is outside the 5-minute window'
          : check.reason === 'malformed'
            ? `${SIGNATURE_HEADER} must be t=<unix seconds>,v1=<hex HMAC-SHA256>`
            : 'the signature does not match',
      );
    }
    usedSignature = check.signature;
  } else {
    throw unauthorized(`send Authorization: Bearer <webhook secret> or a ${SIGNATURE_HEADER} header`);
  }

  // Authenticated: now read the body.
  const type = (d.contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
    throw new AppError('UNSUPPORTED_MEDIA_TYPE', 'send application/json');
  }
  let payload: unknown;
  try {
    payload = JSON.parse(d.rawBody.toString('utf8'));
  } catch {
    throw new AppError('BAD_REQUEST', 'body is not valid JSON');
  }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) {
    throw invalid('body must be a JSON object');
  }
  const event = webhookEvent(hook, payload as Record<string, unknown>, d.eventIdHeader);

  const actor: Actor = {
    type: 'system',
    id: hook.id,
    label: `webhook ${hook.name}`,
    requestId: d.requestId,
    ip: d.ip,
  };
  let intake: Intake;
  try {
    // The signature is recorded with the event, in one transaction: used once it was taken.
    const claim = usedSignature ? { webhookId: hook.id, signature: usedSignature } : undefined;
    intake = await submitEvent(res, tenantId, actor, event, claim);
  } catch (error) {
    // A value PostgreSQL cannot store (a NUL character, a lone surrogate): the sender's mistake.
    const code = String((error as { code?: unknown }).code ?? '');
    if (code.startsWith('22') || code === '23514')
      throw invalid('the event holds a value that cannot be stored');
    throw error;
  }
  await res.db
    .withTenant(
      tenantId,
      (tx) =>
        tx`update webhooks set last_received_at = now() where tenant_id = ${tenantId} and id = ${hook.id}`,
    )
    .catch(() => {});
  return intake;
}

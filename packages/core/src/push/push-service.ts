import { auditActor, type Actor, type Resources } from '../resources.ts';
import { invalid } from '../errors/app-error.ts';

export interface PushSubscriptionInput {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** Remember a browser of this user for approval notifications (the same endpoint again: updated). */
export async function addPushSubscription(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
  sub: PushSubscriptionInput,
): Promise<{ id: string }> {
  let url: URL;
  try {
    url = new URL(sub.endpoint);
  } catch {
    throw invalid('endpoint must be a URL');
  }
  if (url.protocol !== 'https:') throw invalid('endpoint must be an https URL (a browser push service)');
  return res.db.withTenant(
    tenantId,
    async (tx) => {
      const [row] = await tx<{ id: string }[]>`
        insert into push_subscriptions (tenant_id, user_id, endpoint, p256dh, auth)
        values (${tenantId}, ${userId}, ${sub.endpoint}, ${sub.keys.p256dh}, ${sub.keys.auth})
        on conflict (tenant_id, endpoint) do update
          set user_id = excluded.user_id, p256dh = excluded.p256dh, auth = excluded.auth
        returning id`;
      await res.audit.append(tx, tenantId, {
        ...auditActor(actor),
        action: 'push.subscribed',
        targetType: 'push_subscription',
        targetId: row!.id,
        details: { origin: url.origin },
      });
      return { id: row!.id };
    },
    { userId },
  );
}

/** Forget a browser (its own user's only). */
export async function removePushSubscription(
  res: Resources,
  tenantId: string,
  actor: Actor,
  userId: string,
  endpoint: string,
): Promise<boolean> {
  return res.db.withTenant(
    tenantId,
    async (tx) => {
      const rows = await tx<{ id: string }[]>`
        delete from push_subscriptions where tenant_id = ${tenantId} and user_id = ${userId} and endpoint = ${endpoint}
        returning id`;
      if (rows.length) {
        await res.audit.append(tx, tenantId, {
          ...auditActor(actor),
          action: 'push.unsubscribed',
          targetType: 'push_subscription',
          targetId: rows[0]!.id,
        });
      }
      return rows.length > 0;
    },
    { userId },
  );
}

import type { Resources } from '../resources.ts';
import type { Change } from '../live/change-feed.ts';

export interface PushTarget {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/** Delivers one encrypted notification; rejects with `statusCode` 404/410 when the browser unsubscribed. */
export type PushSender = (target: PushTarget, payload: string) => Promise<unknown>;

interface Row {
  id: string;
  endpoint: string;
  p256dh: string;
  auth: string;
}

/**
 * Tells the tenant's subscribed browsers about each new pending approval, once (push_notified keeps
 * several server processes from sending twice). Subscriptions the push service says are gone are
 * deleted.
 */
export async function notifyNewApproval(res: Resources, send: PushSender, change: Change): Promise<number> {
  if (change.kind !== 'approval') return 0;
  const work = await res.db.withTenant(change.tenantId, async (tx) => {
    const [a] = await tx<{ status: string; action: { tool?: string; steps?: unknown[] }; title: string }[]>`
      select a.status, a.action, t.title from approvals a join tasks t on t.tenant_id = a.tenant_id and t.id = a.task_id
      where a.tenant_id = ${change.tenantId} and a.id = ${change.id}`;
    if (!a || a.status !== 'pending') return undefined;
    const claimed = await tx`
      insert into push_notified (tenant_id, approval_id) values (${change.tenantId}, ${change.id})
      on conflict do nothing returning approval_id`;
    if (!claimed.length) return undefined;
    const subs = await tx<
      Row[]
    >`select id, endpoint, p256dh, auth from push_subscriptions where tenant_id = ${change.tenantId}`;
    return { a, subs };
  });
  if (!work || !work.subs.length) return 0;
  const what = work.a.action.tool ?? `a plan of ${work.a.action.steps?.length ?? 0} step(s)`;
  const payload = JSON.stringify({
    title: 'Approval needed',
    body: `${work.a.title}: ${what}`,
    url: `/tasks/${change.taskId}`,
    approvalId: change.id,
  });
  let sent = 0;
  for (const s of work.subs) {
    try {
      await send({ endpoint: s.endpoint, keys: { p256dh: s.p256dh, auth: s.auth } }, payload);
      sent++;
    } catch (error) {
      const status = (error as { statusCode?: number }).statusCode;
      if (status === 404 || status === 410) {
        await res.db.withTenant(
          change.tenantId,
          (tx) => tx`delete from push_subscriptions where tenant_id = ${change.tenantId} and id = ${s.id}`,
        );
      }
    }
  }
  return sent;
}

/** Follow the change feed and notify; returns the stop function. */
export async function startPushNotifier(
  res: Resources,
  send: PushSender,
  log: (message: string) => void = () => {},
): Promise<() => void> {
  if (!res.changes) return () => {};
  return res.changes.subscribeAll((change) => {
    if (change.kind !== 'approval') return;
    notifyNewApproval(res, send, change).catch((error: unknown) =>
      log(`web push for approval ${change.id} failed: ${(error as Error).message}`),
    );
  });
}

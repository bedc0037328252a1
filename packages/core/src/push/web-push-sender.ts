import type { MasterKey } from '../crypto/master-key.ts';
import type { PushSender } from './push-notifier.ts';
import { vapidKeys } from './vapid.ts';

/** The real sender: RFC 8291 encryption and VAPID (RFC 8292) by the `web-push` library. */
export function webPushSender(master: MasterKey, subject: string): PushSender {
  const keys = vapidKeys(master);
  const vapidDetails = { subject, publicKey: keys.publicKey, privateKey: keys.privateKey };
  // web-push loads with the first notification: most servers never send one.
  return async (target, payload) => {
    const { default: webpush } = await import('web-push');
    return webpush.sendNotification(target, payload, { vapidDetails, TTL: 3600, timeout: 10_000 });
  };
}

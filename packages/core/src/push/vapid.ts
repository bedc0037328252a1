import { createECDH } from 'node:crypto';
import type { MasterKey } from '../crypto/master-key.ts';

export interface VapidKeys {
  /** Uncompressed P-256 point, base64url (what PushManager.subscribe takes as applicationServerKey). */
  publicKey: string;
  /** base64url */
  privateKey: string;
}

/**
 * The installation's VAPID key pair, derived from the master key: the same in every process and
 * across restarts, with nothing more to store or back up. (A derived 32-byte value is a valid P-256
 * private key unless it exceeds the group order, a 2^-32 chance; the purpose counter skips it then.)
 */
export function vapidKeys(master: MasterKey): VapidKeys {
  for (let i = 0; ; i++) {
    try {
      const ecdh = createECDH('prime256v1');
      const priv = master.derive(i === 0 ? 'web-push-vapid' : `web-push-vapid:${i}`);
      ecdh.setPrivateKey(priv);
      return { publicKey: ecdh.getPublicKey().toString('base64url'), privateKey: priv.toString('base64url') };
    } catch (error) {
      if (i > 3) throw error;
    }
  }
}

import { useEffect, useState } from 'react';
import { useDashboard } from './dashboard-context.ts';

function keyBytes(base64url: string): Uint8Array<ArrayBuffer> {
  const b64 = base64url.replace(/-/g, '+').replace(/_/g, '/');
  const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
  const out = new Uint8Array(new ArrayBuffer(raw.length));
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

const supported = () => 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;

/** "Notify me on this device" for new approvals (web push). */
export function PushToggle() {
  const { api, offline } = useDashboard();
  const [state, setState] = useState<'unknown' | 'on' | 'off' | 'denied' | 'unsupported'>('unknown');
  const [error, setError] = useState<string | undefined>();

  useEffect(() => {
    if (!supported()) return setState('unsupported');
    if (Notification.permission === 'denied') return setState('denied');
    void navigator.serviceWorker.getRegistration().then(async (reg) => {
      setState((await reg?.pushManager.getSubscription()) ? 'on' : 'off');
    });
  }, []);

  async function turnOn() {
    setError(undefined);
    try {
      if ((await Notification.requestPermission()) !== 'granted') return setState('denied');
      const reg = await navigator.serviceWorker.ready;
      const { publicKey } = await api.request<{ publicKey: string }>('GET', '/push/vapid-key');
      const sub = await reg.pushManager.subscribe({
        userVisibleOnly: true,
        applicationServerKey: keyBytes(publicKey),
      });
      await api.request('POST', '/push/subscriptions', sub.toJSON());
      setState('on');
    } catch (e) {
      setError(`Notifications could not be turned on: ${(e as Error).message}`);
    }
  }

  async function turnOff() {
    const reg = await navigator.serviceWorker.getRegistration();
    const sub = await reg?.pushManager.getSubscription();
    if (sub) {
      await api.request('DELETE', '/push/subscriptions', { endpoint: sub.endpoint }).catch(() => {});
      await sub.unsubscribe();
    }
    setState('off');
  }

  if (state === 'unsupported' || state === 'unknown') return null;
  return (
    <div className="push-toggle">
      {state === 'on' ? (
        <button type="button" onClick={() => void turnOff()} disabled={offline}>
          Stop notifications on this device
        </button>
      ) : state === 'denied' ? (
        <span className="muted">Notifications are blocked for this site in the browser settings.</span>
      ) : (
        <button type="button" onClick={() => void turnOn()} disabled={offline}>
          Notify me of new approvals
        </button>
      )}
      {error && (
        <span className="error" role="alert">
          {' '}
          {error}
        </span>
      )}
    </div>
  );
}

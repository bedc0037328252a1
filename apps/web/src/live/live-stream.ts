import type { ApiClient } from '../api/api-client.ts';
import type { Change } from '../api/types.ts';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'offline';

/**
 * The tenant's live changes over Server-Sent Events. EventSource cannot send an Authorization
 * header, so each connection first asks for a single-use ticket; after an error the stream is
 * reopened with a fresh ticket, backing off up to 15 s.
 */
export function openLiveStream(
  api: ApiClient,
  onChange: (change: Change) => void,
  onStatus: (status: LiveStatus) => void,
  opts: { baseUrl?: string } = {},
): () => void {
  let source: EventSource | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  let failures = 0;

  const retry = () => {
    if (stopped) return;
    failures++;
    onStatus(navigator.onLine === false ? 'offline' : 'reconnecting');
    timer = setTimeout(connect, Math.min(15_000, 500 * 2 ** Math.min(failures, 5)));
  };

  async function connect() {
    if (stopped) return;
    onStatus(failures ? 'reconnecting' : 'connecting');
    let ticket: string;
    try {
      ticket = (await api.streamTicket()).ticket;
    } catch {
      return retry();
    }
    if (stopped) return;
    source = new EventSource(
      `${opts.baseUrl ?? ''}/api/v1/events/stream?ticket=${encodeURIComponent(ticket)}`,
    );
    source.addEventListener('ready', () => {
      failures = 0;
      onStatus('live');
    });
    source.addEventListener('change', (e) => {
      try {
        onChange(JSON.parse((e as MessageEvent<string>).data) as Change);
      } catch {
        // a malformed frame is ignored
      }
    });
    source.onerror = () => {
      source?.close();
      source = undefined;
      retry();
    };
  }

  void connect();
  const online = () => {
    if (source || stopped) return;
    if (timer) clearTimeout(timer);
    failures = 0;
    void connect();
  };
  window.addEventListener('online', online);
  return () => {
    stopped = true;
    if (timer) clearTimeout(timer);
    source?.close();
    window.removeEventListener('online', online);
  };
}

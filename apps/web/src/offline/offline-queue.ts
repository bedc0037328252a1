import { ApiError, NetworkError } from '../api/api-client.ts';

/** A decision made while offline, waiting to be sent. One per approval (the last one made wins). */
export interface QueuedDecision {
  approvalId: string;
  tenantId: string;
  decision: 'approve' | 'reject';
  comment?: string | undefined;
  /** What was decided, for the user (e.g. "email.send to bob@example.com"). */
  label: string;
  queuedAt: number;
}

export interface QueueStore {
  all(): Promise<QueuedDecision[]>;
  put(item: QueuedDecision): Promise<void>;
  delete(approvalId: string): Promise<void>;
}

export type FlushOutcome =
  | { item: QueuedDecision; result: 'sent' }
  /** Someone decided (or the approval expired or was cancelled) first: the queued decision is dropped. */
  | { item: QueuedDecision; result: 'conflict'; message: string }
  /** Refused for good (gone, not allowed): dropped, with the reason. */
  | { item: QueuedDecision; result: 'failed'; message: string }
  /** Still offline or signed out: kept for the next try. */
  | { item: QueuedDecision; result: 'kept' };

/**
 * Send the queued decisions of one tenant, oldest first. A conflict (409) or a refusal removes the
 * item and reports why; losing the connection stops the flush and keeps the rest.
 */
export async function flushQueue(
  store: QueueStore,
  tenantId: string,
  send: (item: QueuedDecision) => Promise<unknown>,
): Promise<FlushOutcome[]> {
  const items = (await store.all())
    .filter((i) => i.tenantId === tenantId)
    .sort((a, b) => a.queuedAt - b.queuedAt);
  const outcomes: FlushOutcome[] = [];
  let stopped = false;
  for (const item of items) {
    if (stopped) {
      outcomes.push({ item, result: 'kept' });
      continue;
    }
    try {
      await send(item);
      await store.delete(item.approvalId);
      outcomes.push({ item, result: 'sent' });
    } catch (error) {
      if (error instanceof NetworkError || (error instanceof ApiError && error.status === 401)) {
        stopped = true;
        outcomes.push({ item, result: 'kept' });
      } else if (error instanceof ApiError && error.status === 409) {
        await store.delete(item.approvalId);
        outcomes.push({ item, result: 'conflict', message: error.message });
      } else {
        await store.delete(item.approvalId);
        outcomes.push({ item, result: 'failed', message: (error as Error).message });
      }
    }
  }
  return outcomes;
}

export function memoryQueueStore(): QueueStore {
  const items = new Map<string, QueuedDecision>();
  return {
    async all() {
      return [...items.values()];
    },
    async put(item) {
      items.set(item.approvalId, item);
    },
    async delete(id) {
      items.delete(id);
    },
  };
}

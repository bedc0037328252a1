import { describe, expect, it } from 'vitest';
import { ApiError, NetworkError } from '../api/api-client.ts';
import { flushQueue, memoryQueueStore, type QueuedDecision } from './offline-queue.ts';

const item = (approvalId: string, queuedAt: number, tenantId = 't1'): QueuedDecision => ({
  approvalId,
  tenantId,
  decision: 'approve',
  label: `noop ${approvalId}`,
  queuedAt,
});

describe('offline decision queue', () => {
  it('sends oldest first, drops conflicts and refusals with their reason, and only for the tenant', async () => {
    const store = memoryQueueStore();
    await store.put(item('b', 2));
    await store.put(item('a', 1));
    await store.put(item('c', 3));
    await store.put(item('other', 0, 't2'));
    const sent: string[] = [];
    const outcomes = await flushQueue(store, 't1', async (i) => {
      sent.push(i.approvalId);
      if (i.approvalId === 'b') throw new ApiError(409, 'CONFLICT', 'approval is already approved');
      if (i.approvalId === 'c') throw new ApiError(403, 'FORBIDDEN', 'you may not approve your own request');
    });
    expect(sent).toEqual(['a', 'b', 'c']);
    expect(outcomes.map((o) => [o.item.approvalId, o.result])).toEqual([
      ['a', 'sent'],
      ['b', 'conflict'],
      ['c', 'failed'],
    ]);
    expect(outcomes[1]).toMatchObject({ message: 'approval is already approved' });
    expect((await store.all()).map((i) => i.approvalId)).toEqual(['other']);
  });

  it('stops and keeps everything left when the connection drops or the session is gone', async () => {
    const store = memoryQueueStore();
    await store.put(item('a', 1));
    await store.put(item('b', 2));
    await store.put(item('c', 3));
    let calls = 0;
    const outcomes = await flushQueue(store, 't1', async (i) => {
      calls++;
      if (i.approvalId === 'b') throw new NetworkError();
    });
    expect(calls).toBe(2);
    expect(outcomes.map((o) => o.result)).toEqual(['sent', 'kept', 'kept']);
    expect((await store.all()).map((i) => i.approvalId).sort()).toEqual(['b', 'c']);

    const again = await flushQueue(store, 't1', async () => {
      throw new ApiError(401, 'UNAUTHENTICATED', 'expired');
    });
    expect(again.map((o) => o.result)).toEqual(['kept', 'kept']);
    expect(await store.all()).toHaveLength(2);
  });

  it('keeps one decision per approval: the last one made', async () => {
    const store = memoryQueueStore();
    await store.put(item('a', 1));
    await store.put({ ...item('a', 2), decision: 'reject' });
    expect(await store.all()).toEqual([{ ...item('a', 2), decision: 'reject' }]);
  });
});

import type { QueueStore, QueuedDecision } from './offline-queue.ts';

const DB_NAME = 'steward';
const VERSION = 1;

function open(): Promise<IDBDatabase> {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB_NAME, VERSION);
    req.onupgradeneeded = () => {
      const db = req.result;
      if (!db.objectStoreNames.contains('decisions'))
        db.createObjectStore('decisions', { keyPath: 'approvalId' });
      if (!db.objectStoreNames.contains('snapshots')) db.createObjectStore('snapshots');
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

let dbPromise: Promise<IDBDatabase> | undefined;
const db = () => (dbPromise ??= open());

async function run<T>(
  store: string,
  mode: IDBTransactionMode,
  fn: (s: IDBObjectStore) => IDBRequest<T>,
): Promise<T> {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction(store, mode);
    const req = fn(tx.objectStore(store));
    tx.oncomplete = () => resolve(req.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

/** The offline decision queue in IndexedDB (survives reloads and restarts of the installed app). */
export const idbQueueStore: QueueStore = {
  all: () =>
    run<QueuedDecision[]>('decisions', 'readonly', (s) => s.getAll() as IDBRequest<QueuedDecision[]>),
  put: async (item) => {
    await run('decisions', 'readwrite', (s) => s.put(item));
  },
  delete: async (id) => {
    await run('decisions', 'readwrite', (s) => s.delete(id));
  },
};

/** Recent data per tenant (task list, approvals), shown when the server cannot be reached. */
export const snapshots = {
  async get<T>(tenantId: string, name: string): Promise<{ at: number; data: T } | undefined> {
    return (await run('snapshots', 'readonly', (s) => s.get(`${tenantId}:${name}`))) as
      { at: number; data: T } | undefined;
  },
  async put(tenantId: string, name: string, data: unknown): Promise<void> {
    await run('snapshots', 'readwrite', (s) => s.put({ at: Date.now(), data }, `${tenantId}:${name}`));
  },
  /** Sign-out: nothing of the user's stays on the device. */
  async clear(): Promise<void> {
    await run('snapshots', 'readwrite', (s) => s.clear());
    await run('decisions', 'readwrite', (s) => s.clear());
  },
};

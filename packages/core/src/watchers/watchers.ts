import type { Resources } from '../resources.ts';
import { startFolderWatcher, type FolderWatcherOptions } from './folder-watcher.ts';
import { Leadership, processHolderId } from './leases.ts';
import { startScheduler } from './scheduler.ts';

export const FOLDER_LEASE = 'watch:folder';
export const SCHEDULER_LEASE = 'scheduler';
export const IMAP_LEASE = 'watch:imap';

export interface WatchersOptions {
  /** Lease lifetime: how long a dead leader blocks the others (renewed every third of it). */
  leaseMs: number;
  holder?: string;
  folder?: Omit<FolderWatcherOptions, 'log'>;
  log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface WatchersHandle {
  readonly holder: string;
  /** Stop the work and release the leases, so another process takes over at once. */
  stop(): Promise<void>;
}

/**
 * The background roles of a `worker` / `all` process: the folder watcher, the scheduler and the
 * IMAP mailboxes, each run only by the process holding its lease (any number of processes may
 * call this).
 */
export function startWatchers(res: Resources, opts: WatchersOptions): WatchersHandle {
  const holder = opts.holder ?? processHolderId();
  const folder = new Leadership({
    db: res.db,
    name: FOLDER_LEASE,
    holder,
    ttlMs: opts.leaseMs,
    log: opts.log,
    lead: async () => {
      const watcher = startFolderWatcher(res, { ...opts.folder, log: opts.log });
      return () => watcher.stop();
    },
  });
  const scheduler = new Leadership({
    db: res.db,
    name: SCHEDULER_LEASE,
    holder,
    ttlMs: opts.leaseMs,
    log: opts.log,
    lead: async () => {
      const loop = startScheduler(res, { log: opts.log });
      return () => loop.stop();
    },
  });
  const imap = new Leadership({
    db: res.db,
    name: IMAP_LEASE,
    holder,
    ttlMs: opts.leaseMs,
    log: opts.log,
    lead: async () => {
      // Loaded on first leadership only: most processes never need the IMAP client.
      const { startImapMailboxes } = await import('../email/imap-mailboxes.ts');
      const mailboxes = startImapMailboxes(res, { log: opts.log });
      return () => mailboxes.stop();
    },
  });
  folder.start();
  scheduler.start();
  imap.start();
  return {
    holder,
    async stop() {
      await Promise.all([folder.stop(), scheduler.stop(), imap.stop()]);
    },
  };
}

import type { Page, TaskSummary } from '../api/types.ts';
import type { Session } from '../auth/session.ts';

/** How many tasks the board asks for (its first and only page). */
export const BOARD_PAGE_SIZE = 200;

/** A prefetched list older than this is not used: the board asks again. */
export const FIRST_LOAD_MAX_AGE_MS = 10_000;

/**
 * The first screen's task list, asked for the moment a resumed session is signed in, while the
 * rest of the dashboard's code is still loading (the entry module creates this before it imports
 * the app). The dashboard takes it once, for the tenant it was asked for and while it is fresh;
 * anything else (another tenant, a second mount, a late mount) fetches as usual. The list is a
 * snapshot like any other: the dashboard reloads when its live stream connects.
 */
export class FirstLoad {
  private pending: { tenantId: string; at: number; tasks: Promise<Page<TaskSummary>> } | undefined;
  private readonly unsubscribe: () => void;

  constructor(
    session: Session,
    private readonly now: () => number = Date.now,
  ) {
    this.unsubscribe = session.subscribe(() => {
      const state = session.current;
      if (state.status === 'starting') return;
      // Only the session's first outcome: a later sign-in renders its own board.
      this.unsubscribe();
      if (state.status !== 'signed-in') return;
      const tasks = session.api.tasks({ limit: BOARD_PAGE_SIZE });
      // The board reports a failure when it takes the list; until then it is no unhandled rejection.
      tasks.catch(() => {});
      this.pending = { tenantId: state.tenant.id, at: this.now(), tasks };
    });
  }

  /** The prefetched task list for this tenant, at most once; undefined when there is none to use. */
  takeTasks(tenantId: string): Promise<Page<TaskSummary>> | undefined {
    const pending = this.pending;
    this.pending = undefined;
    if (!pending || pending.tenantId !== tenantId) return undefined;
    if (this.now() - pending.at > FIRST_LOAD_MAX_AGE_MS) return undefined;
    return pending.tasks;
  }
}

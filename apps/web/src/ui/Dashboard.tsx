import { lazy, Suspense, useCallback, useEffect, useMemo, useReducer, useRef, useState } from 'react';
import { ApiError, NetworkError } from '../api/api-client.ts';
import type { Approval, Change, Page, TaskSummary, TenantInfo } from '../api/types.ts';
import type { Session, SessionState } from '../auth/session.ts';
import { openLiveStream, type LiveStatus } from '../live/live-stream.ts';
import { idbQueueStore, snapshots } from '../offline/idb.ts';
import { flushQueue, type FlushOutcome, type QueuedDecision } from '../offline/offline-queue.ts';
import { actionLabel } from '../state/describe-action.ts';
import { BOARD_PAGE_SIZE, type FirstLoad } from '../state/first-load.ts';
import { initialTasks, tasksReducer } from '../state/tasks-state.ts';
import { DashboardContext, type DashboardData, type DecideResult } from './dashboard-context.ts';
import { Overview } from './Overview.tsx';
import { onLinkClick, useRoute } from './router.ts';

// Screens other than the overview load when first shown (the overview is what a cold start needs).
const Admin = lazy(() => import('./Admin.tsx').then((m) => ({ default: m.Admin })));
const Approvals = lazy(() => import('./Approvals.tsx').then((m) => ({ default: m.Approvals })));
const AuditView = lazy(() => import('./AuditView.tsx').then((m) => ({ default: m.AuditView })));
const TaskDetailView = lazy(() => import('./TaskDetail.tsx').then((m) => ({ default: m.TaskDetailView })));

type Props = {
  session: Session;
  state: Extract<SessionState, { status: 'signed-in' | 'offline' }>;
  /** The task list asked for while the app loaded (taken once, for this tenant). */
  firstLoad?: FirstLoad | undefined;
};

const LIVE_LABEL: Record<LiveStatus, string> = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

export function Dashboard({ session, state, firstLoad }: Props) {
  const api = session.api;
  const tenantId = state.tenant.id;
  const offline = state.status === 'offline';
  const route = useRoute();
  const [tasks, dispatch] = useReducer(tasksReducer, initialTasks);
  const [approvals, setApprovals] = useState<Approval[]>([]);
  const [approvalsLoaded, setApprovalsLoaded] = useState(false);
  const [decidedHere, setDecidedHere] = useState<Record<string, Approval>>({});
  const [live, setLive] = useState<LiveStatus>('connecting');
  const [queued, setQueued] = useState<QueuedDecision[]>([]);
  const [outcomes, setOutcomes] = useState<FlushOutcome[]>([]);
  const [tenants, setTenants] = useState<TenantInfo[]>([]);
  const [savedAt, setSavedAt] = useState<number | null>(null);
  const [loadError, setLoadError] = useState<string | undefined>();
  const changeListeners = useRef(new Set<(c: Change) => void>());

  const refreshQueue = useCallback(async () => {
    setQueued((await idbQueueStore.all().catch(() => [])).filter((q) => q.tenantId === tenantId));
  }, [tenantId]);

  const loadApprovals = useCallback(async () => {
    try {
      const page = await api.approvals({ status: 'pending' });
      setApprovals(page.items);
      setApprovalsLoaded(true);
      void snapshots.put(tenantId, 'approvals', page.items).catch(() => {});
    } catch (error) {
      if (!(error instanceof NetworkError)) setLoadError((error as Error).message);
    }
  }, [api, tenantId]);

  const loadTasks = useCallback(
    async (prefetched?: Promise<Page<TaskSummary>>) => {
      try {
        const page = await (prefetched ?? api.tasks({ limit: BOARD_PAGE_SIZE }));
        dispatch({ type: 'loaded', items: page.items, at: Date.now() });
        setSavedAt(null);
        void snapshots.put(tenantId, 'tasks', page.items).catch(() => {});
      } catch (error) {
        if (!(error instanceof NetworkError)) setLoadError((error as Error).message);
      }
    },
    [api, tenantId],
  );

  const loadAll = useCallback(async () => {
    setLoadError(undefined);
    await Promise.all([loadTasks(), loadApprovals()]);
  }, [loadTasks, loadApprovals]);

  // Offline: the saved data of this tenant.
  useEffect(() => {
    void refreshQueue();
    if (!offline) return;
    let cancelled = false;
    void (async () => {
      const t = await snapshots
        .get<import('../api/types.ts').TaskSummary[]>(tenantId, 'tasks')
        .catch(() => undefined);
      const a = await snapshots.get<Approval[]>(tenantId, 'approvals').catch(() => undefined);
      if (cancelled) return;
      if (t) dispatch({ type: 'loaded', items: t.data, at: t.at });
      if (a) setApprovals(a.data);
      setApprovalsLoaded(true);
      setSavedAt(t?.at ?? a?.at ?? null);
    })();
    const online = () => void session.renew();
    window.addEventListener('online', online);
    const retry = setInterval(online, 10_000);
    return () => {
      cancelled = true;
      window.removeEventListener('online', online);
      clearInterval(retry);
    };
  }, [offline, tenantId, session, refreshQueue]);

  // Online: load the board at once (the list the entry module asked for, if any), send what was
  // queued offline and then load the approvals, and follow the live stream. A list is a snapshot:
  // changes made before the stream is connected are not in it, so every (re)connection reloads.
  useEffect(() => {
    if (offline) return;
    let stop = () => {};
    let cancelled = false;
    setLoadError(undefined);
    const tasksLoaded = loadTasks(firstLoad?.takeTasks(tenantId));
    void (async () => {
      const results = await flushQueue(idbQueueStore, tenantId, (item) =>
        api.decide(item.approvalId, item.decision, item.comment),
      ).catch(() => []);
      if (cancelled) return;
      if (results.some((r) => r.result !== 'kept')) setOutcomes(results.filter((r) => r.result !== 'kept'));
      await refreshQueue();
      await Promise.all([loadApprovals(), tasksLoaded]);
      if (cancelled) return;
      const pending = new Map<string, ReturnType<typeof setTimeout>>();
      let approvalsTimer: ReturnType<typeof setTimeout> | undefined;
      stop = openLiveStream(
        api,
        (change) => {
          for (const l of changeListeners.current) l(change);
          if (!pending.has(change.taskId)) {
            pending.set(
              change.taskId,
              setTimeout(() => {
                pending.delete(change.taskId);
                api.task(change.taskId).then(
                  (t) => dispatch({ type: 'upsert', task: t }),
                  () => {},
                );
              }, 30),
            );
          }
          if (change.kind === 'approval') {
            if (approvalsTimer) clearTimeout(approvalsTimer);
            approvalsTimer = setTimeout(() => void loadApprovals(), 30);
          }
        },
        (s) => {
          setLive(s);
          // What changed between the list's read and this connection is in no event: read again.
          if (s === 'live') void loadAll();
          if (s === 'reconnecting' || s === 'offline') void session.renew();
        },
      );
    })();
    api.myTenants().then(
      (r) => setTenants(r.items),
      () => {},
    );
    return () => {
      cancelled = true;
      stop();
    };
  }, [offline, tenantId, api, session, firstLoad, loadTasks, loadAll, loadApprovals, refreshQueue]);

  const decide = useCallback(
    async (approval: Approval, decision: 'approve' | 'reject', comment?: string): Promise<DecideResult> => {
      const queue = async (): Promise<DecideResult> => {
        await idbQueueStore.put({
          approvalId: approval.id,
          tenantId,
          decision,
          comment,
          label: [tasks.byId[approval.taskId]?.title, actionLabel(approval.action)]
            .filter(Boolean)
            .join(' — '),
          queuedAt: Date.now(),
        });
        await refreshQueue();
        return { result: 'queued' };
      };
      if (offline) return queue();
      try {
        const r = await api.decide(approval.id, decision, comment);
        setDecidedHere((d) => ({ ...d, [approval.id]: r.approval }));
        setApprovals((list) => list.filter((a) => a.id !== approval.id));
        return { result: 'decided' };
      } catch (error) {
        if (error instanceof NetworkError) return queue();
        if (error instanceof ApiError && error.status === 409) {
          const now = await api.approval(approval.id).catch(() => approval);
          setDecidedHere((d) => ({ ...d, [approval.id]: now }));
          void loadApprovals();
          return { result: 'conflict', message: error.message };
        }
        throw error;
      }
    },
    [api, offline, tenantId, refreshQueue, loadApprovals, tasks.byId],
  );

  // Stable, so panels that subscribe do not reload whenever the dashboard re-renders.
  const onChange = useCallback((fn: (c: Change) => void) => {
    changeListeners.current.add(fn);
    return () => changeListeners.current.delete(fn);
  }, []);

  const data: DashboardData = useMemo(
    () => ({
      api,
      tenant: state.tenant,
      offline,
      live: offline ? 'offline' : live,
      tasks,
      approvals,
      approvalsLoaded,
      decidedHere,
      queued,
      decide,
      onChange,
      taskTitle: (id) => tasks.byId[id]?.title,
      reload: () => void loadAll(),
    }),
    [
      api,
      state.tenant,
      offline,
      live,
      tasks,
      approvals,
      approvalsLoaded,
      decidedHere,
      queued,
      decide,
      onChange,
      loadAll,
    ],
  );

  const pendingCount = approvals.filter(
    (a) => a.status === 'pending' && !queued.some((q) => q.approvalId === a.id),
  ).length;

  return (
    <DashboardContext.Provider value={data}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <a href="/" className="brand" onClick={onLinkClick}>
          <img src="/icons/icon-192.png" alt="" width="24" height="24" /> Steward
        </a>
        <nav aria-label="Main">
          <a href="/" onClick={onLinkClick} aria-current={route.name === 'overview' ? 'page' : undefined}>
            Overview
          </a>
          <a
            href="/approvals"
            onClick={onLinkClick}
            aria-current={route.name === 'approvals' ? 'page' : undefined}
          >
            Approvals{' '}
            {pendingCount > 0 && (
              <span className="badge" aria-label={`${pendingCount} pending`} data-testid="pending-count">
                {pendingCount}
              </span>
            )}
          </a>
          <a href="/audit" onClick={onLinkClick} aria-current={route.name === 'audit' ? 'page' : undefined}>
            Audit
          </a>
          <a href="/admin" onClick={onLinkClick} aria-current={route.name === 'admin' ? 'page' : undefined}>
            Admin
          </a>
        </nav>
        <div className="session">
          <span className={`live live-${offline ? 'offline' : live}`} role="status" data-testid="live-status">
            {LIVE_LABEL[offline ? 'offline' : live]}
          </span>
          {tenants.length > 1 ? (
            <label className="tenant-switch">
              <span className="visually-hidden">Organisation</span>
              <select
                value={state.tenant.slug}
                disabled={offline}
                onChange={(e) => void session.switchTenant(e.target.value).catch(() => {})}
              >
                {tenants.map((t) => (
                  <option key={t.id} value={t.slug}>
                    {t.name}
                  </option>
                ))}
              </select>
            </label>
          ) : (
            <span className="tenant-name">{state.tenant.name}</span>
          )}
          <span className="user" title={state.user.email}>
            {state.user.email}
          </span>
          <button
            type="button"
            onClick={() =>
              void snapshots
                .clear()
                .catch(() => {})
                .then(() => session.signOut())
            }
          >
            Sign out
          </button>
        </div>
      </header>
      {offline && (
        <p className="banner offline" role="status">
          You are offline. {savedAt ? `Showing data saved ${new Date(savedAt).toLocaleString()}. ` : ''}
          Decisions you make are queued and sent when the connection returns.
        </p>
      )}
      {queued.length > 0 && (
        <div className="banner queued" role="status" data-testid="queued">
          <strong>{queued.length} decision(s) waiting to be sent:</strong>
          <ul>
            {queued.map((q) => (
              <li key={q.approvalId}>
                {q.decision === 'approve' ? 'Approve' : 'Reject'} {q.label}
              </li>
            ))}
          </ul>
        </div>
      )}
      {outcomes.length > 0 && (
        <div className="banner outcomes" role="alert" data-testid="sync-outcomes">
          <strong>Decisions made offline:</strong>
          <ul>
            {outcomes.map((o) => (
              <li key={o.item.approvalId}>
                {o.item.decision === 'approve' ? 'Approve' : 'Reject'} {o.item.label}:{' '}
                {o.result === 'sent'
                  ? 'sent.'
                  : o.result === 'conflict'
                    ? `not applied — someone else decided it first, or it expired (${o.message}).`
                    : o.result === 'failed'
                      ? `not applied (${o.message}).`
                      : 'still waiting.'}
              </li>
            ))}
          </ul>
          <button type="button" onClick={() => setOutcomes([])}>
            Dismiss
          </button>
        </div>
      )}
      {loadError && (
        <p className="banner error" role="alert">
          Could not load: {loadError}{' '}
          <button type="button" onClick={() => void loadAll()}>
            Retry
          </button>
        </p>
      )}
      <main id="main">
        {route.name === 'overview' && <Overview />}
        <Suspense fallback={<p aria-busy="true">Loading…</p>}>
          {route.name === 'approvals' && <Approvals />}
          {route.name === 'audit' && <AuditView />}
          {route.name === 'admin' && <Admin />}
          {route.name === 'task' && <TaskDetailView id={route.id} />}
        </Suspense>
        {route.name === 'not-found' && (
          <section className="empty">
            <h1>Not found</h1>
            <p>
              <a href="/" onClick={onLinkClick}>
                Back to the overview
              </a>
            </p>
          </section>
        )}
      </main>
    </DashboardContext.Provider>
  );
}

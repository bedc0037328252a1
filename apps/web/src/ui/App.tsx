import { lazy, Suspense, useEffect, useState, useSyncExternalStore } from 'react';
import type { Session } from '../auth/session.ts';
import type { FirstLoad } from '../state/first-load.ts';
import { Dashboard } from './Dashboard.tsx';
import { inviteTokenFrom } from './router.ts';
import { SignIn } from './SignIn.tsx';

const AcceptInvite = lazy(() => import('./AcceptInvite.tsx').then((m) => ({ default: m.AcceptInvite })));

const loading = (
  <main className="center" aria-busy="true">
    <p>Loading Steward…</p>
  </main>
);

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const update = () => setHash(window.location.hash);
    window.addEventListener('hashchange', update);
    window.addEventListener('popstate', update);
    return () => {
      window.removeEventListener('hashchange', update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return hash;
}

export function App({ session, firstLoad }: { session: Session; firstLoad?: FirstLoad }) {
  const state = useSyncExternalStore(session.subscribe, session.getSnapshot);
  const invite = inviteTokenFrom(useHash());
  if (state.status === 'starting') return loading;
  if (state.status === 'mfa') return <SignIn session={session} state={state} />;
  if (invite && state.status !== 'offline')
    return (
      <Suspense fallback={loading}>
        <AcceptInvite session={session} state={state} token={invite} />
      </Suspense>
    );
  if (state.status === 'signed-out') return <SignIn session={session} state={state} />;
  return <Dashboard key={state.tenant.id} session={session} state={state} firstLoad={firstLoad} />;
}

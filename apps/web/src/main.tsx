import { Session } from './auth/session.ts';
import { FirstLoad } from './state/first-load.ts';
import './styles.css';

performance.mark('steward:app-start');

// This entry is small on purpose: it resumes the session (the token refresh) and asks for the first
// screen's tasks while the browser is still loading and compiling the app itself (React and the
// screens), a separate chunk that index.html preloads (build/preload-app-plugin.ts).
let requestSent = () => {};
const firstRequest = new Promise<void>((resolve) => (requestSent = resolve));
const session = new Session(window.localStorage, {
  fetch: (input, init) => {
    requestSent();
    return fetch(input, init);
  },
});
const firstLoad = new FirstLoad(session);
const started = session.start();

// Evaluating the app takes the main thread for a while: start it once the refresh is on its way
// (or at once when there is nothing to refresh), not before.
const root = document.getElementById('root')!;
void Promise.race([firstRequest, started.catch(() => {})])
  .then(() => import('./ui/mount.tsx'))
  .then(
    ({ mount }) => mount(root, session, firstLoad),
    () => {
      root.innerHTML =
        '<main class="center" role="alert"><p>Steward could not be loaded. Check the connection and reload the page.</p></main>';
    },
  );

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  const register = () =>
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
      // No offline shell: the app works as a plain page.
    });
  if (document.readyState === 'complete') void register();
  else window.addEventListener('load', () => void register(), { once: true });
}

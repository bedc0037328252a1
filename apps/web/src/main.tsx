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

// Evaluating the app takes the main thread for a while (~0.1-0.3 s): start it once the refresh has
// been answered and the board's tasks asked for (or at once when there is nothing to refresh), so
// that it runs while the tasks are on their way instead of holding up the refresh's answer; at most
// 300 ms after the refresh was sent, so that a slow answer does not hold up the loading screen.
const root = document.getElementById('root')!;
const settled = started.catch(() => {});
void Promise.race([settled, firstRequest.then(() => new Promise((resolve) => setTimeout(resolve, 300)))])
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

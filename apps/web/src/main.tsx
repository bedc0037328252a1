import { Session } from './auth/session.ts';
import { FirstLoad } from './state/first-load.ts';
import './styles.css';

performance.mark('steward:app-start');

// This entry is small on purpose: it resumes the session (the token refresh) and asks for the first
// screen's tasks while the browser is still loading and compiling the app itself (React and the
// screens), a separate chunk that index.html preloads (build/preload-app-plugin.ts).
const session = new Session(window.localStorage);
const firstLoad = new FirstLoad(session);
void session.start();

const root = document.getElementById('root')!;
import('./ui/mount.tsx').then(
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

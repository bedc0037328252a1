import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Session } from './auth/session.ts';
import { App } from './ui/App.tsx';
import './styles.css';

const session = new Session(window.localStorage);
createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App session={session} />
  </StrictMode>,
);
void session.start();

if ('serviceWorker' in navigator && import.meta.env.PROD) {
  const register = () =>
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
      // No offline shell: the app works as a plain page.
    });
  if (document.readyState === 'complete') void register();
  else window.addEventListener('load', () => void register(), { once: true });
}

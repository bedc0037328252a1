import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import type { Session } from '../auth/session.ts';
import type { FirstLoad } from '../state/first-load.ts';
import { App } from './App.tsx';

/** Render the dashboard into `root` (the entry module imports this once the session is under way). */
export function mount(root: HTMLElement, session: Session, firstLoad: FirstLoad): void {
  performance.mark('steward:mount');
  createRoot(root).render(
    <StrictMode>
      <App session={session} firstLoad={firstLoad} />
    </StrictMode>,
  );
}

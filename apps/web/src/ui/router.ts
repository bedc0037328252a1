import { useEffect, useState } from 'react';

export type Route =
  | { name: 'overview' }
  | { name: 'task'; id: string }
  | { name: 'approvals' }
  | { name: 'audit' }
  | { name: 'admin' }
  | { name: 'not-found' };

export function parseRoute(pathname: string): Route {
  if (pathname === '/' || pathname === '') return { name: 'overview' };
  if (pathname === '/approvals') return { name: 'approvals' };
  if (pathname === '/audit') return { name: 'audit' };
  if (pathname === '/admin') return { name: 'admin' };
  const task = /^\/tasks\/([0-9a-f-]{36})$/i.exec(pathname);
  if (task) return { name: 'task', id: task[1]! };
  return { name: 'not-found' };
}

const listeners = new Set<() => void>();

export function navigate(path: string) {
  if (path === window.location.pathname) return;
  window.history.pushState(null, '', path);
  for (const l of listeners) l();
  window.scrollTo(0, 0);
}

export function useRoute(): Route {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const update = () => setPath(window.location.pathname);
    listeners.add(update);
    window.addEventListener('popstate', update);
    return () => {
      listeners.delete(update);
      window.removeEventListener('popstate', update);
    };
  }, []);
  return parseRoute(path);
}

/** Client-side navigation for plain links (keeps ctrl/cmd-click opening a new tab). */
export function onLinkClick(e: React.MouseEvent<HTMLAnchorElement>) {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  e.preventDefault();
  navigate(e.currentTarget.getAttribute('href')!);
}

/** The token of an invitation link `<app>/#/invite/<token>` (in the fragment: never sent to a server log). */
export function inviteTokenFrom(hash: string): string | undefined {
  const m = /^#\/invite\/([A-Za-z0-9_]{1,200})$/.exec(hash);
  return m?.[1];
}

/** The link an invitee opens, for a token. */
export function inviteLink(origin: string, token: string): string {
  return `${origin.replace(/\/$/, '')}/#/invite/${token}`;
}

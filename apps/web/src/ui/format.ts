export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  const seconds = Math.round((Date.now() - d.getTime()) / 1000);
  if (seconds < 60 && seconds > -60) return 'just now';
  if (seconds < 3600 && seconds > 0) return `${Math.round(seconds / 60)} min ago`;
  return d.toLocaleString();
}

export function json(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v, null, 2);
}

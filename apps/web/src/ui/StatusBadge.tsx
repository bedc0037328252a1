import type { TaskStatus } from '../api/types.ts';
import { STATUS_LABEL } from '../state/tasks-state.ts';

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`status status-${status}`} data-status={status}>
      {STATUS_LABEL[status as TaskStatus] ?? status.replace(/_/g, ' ')}
    </span>
  );
}

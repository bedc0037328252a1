import { createHash } from 'node:crypto';
import type { Resources } from '../resources.ts';
import { Leadership, processHolderId } from '../watchers/leases.ts';
import { enabledTenantDestinations } from './destination-service.ts';
import type { InstallationDestination, ResolvedDestination } from './siem-destination.ts';
import { startForwarder, type ForwarderHandle, type ForwarderOptions } from './siem-forwarder.ts';

/**
 * The SIEM role of a worker process: every `refreshMs` it lists the destinations (the tenants'
 * enabled ones and the installation's from STEWARD_SIEM_DESTINATIONS) and offers to forward each
 * one under its own lease `siem:<key>`, so exactly one process forwards a destination at a time and
 * the destinations spread over the worker processes. A destination edited, disabled or deleted is
 * stopped (and restarted with its new settings).
 */

export interface SiemForwardingOptions {
  leaseMs: number;
  holder?: string | undefined;
  installation?: InstallationDestination[] | undefined;
  /** How often the destination list is re-read (default 5 s). */
  refreshMs?: number | undefined;
  forwarder?: Partial<ForwarderOptions> | undefined;
  log?: ((level: 'info' | 'warn' | 'error', message: string) => void) | undefined;
}

export interface SiemForwardingHandle {
  readonly holder: string;
  /** Re-read the destination list now. */
  refresh(): Promise<void>;
  stop(): Promise<void>;
}

export function leaseNameOf(key: string): string {
  return 'siem:' + (key.length <= 150 ? key : createHash('sha256').update(key).digest('hex'));
}

function installationResolved(d: InstallationDestination): ResolvedDestination {
  return {
    key: `install:${d.name}`,
    name: d.name,
    kind: d.kind,
    config: d.config,
    secret: d.kind === 'https' ? d.token : undefined,
    tenantId: undefined,
    version: JSON.stringify(d),
  };
}

export function startSiemForwarding(res: Resources, opts: SiemForwardingOptions): SiemForwardingHandle {
  const holder = opts.holder ?? processHolderId();
  interface Running {
    version: string;
    tenantId: string | undefined;
    leadership: Leadership;
    forwarder?: ForwarderHandle | undefined;
  }
  const running = new Map<string, Running>();
  const installation = (opts.installation ?? []).map(installationResolved);
  let stopped = false;
  let refreshing: Promise<void> = Promise.resolve();

  // Appends in this process wake the forwarders (a little later: the append's transaction must commit).
  res.audit.onAppend((tenantId) => {
    if (stopped) return;
    setTimeout(() => {
      for (const r of running.values()) {
        if (r.tenantId === undefined || r.tenantId === tenantId) r.forwarder?.wake();
      }
    }, 50).unref?.();
  });

  async function sync(): Promise<void> {
    const wanted = [...installation, ...(await enabledTenantDestinations(res))];
    if (stopped) return;
    const keys = new Set(wanted.map((d) => d.key));
    for (const [key, r] of running) {
      const now = wanted.find((d) => d.key === key);
      if (!keys.has(key) || now?.version !== r.version) {
        running.delete(key);
        await r.leadership.stop();
      }
    }
    for (const dest of wanted) {
      if (running.has(dest.key)) continue;
      const entry: Running = {
        version: dest.version,
        tenantId: dest.tenantId,
        leadership: new Leadership({
          db: res.db,
          name: leaseNameOf(dest.key),
          holder,
          ttlMs: opts.leaseMs,
          log: opts.log,
          lead: async () => {
            const secret = dest.loadSecret ? await dest.loadSecret() : dest.secret;
            const forwarder = startForwarder(res, { ...dest, secret }, { ...opts.forwarder, log: opts.log });
            entry.forwarder = forwarder;
            return async () => {
              entry.forwarder = undefined;
              await forwarder.stop();
            };
          },
        }),
      };
      running.set(dest.key, entry);
      entry.leadership.start();
    }
  }

  const refresh = () => {
    refreshing = refreshing.then(sync).catch((e: unknown) => {
      opts.log?.('warn', `SIEM destinations could not be read: ${(e as Error).message}`);
    });
    return refreshing;
  };
  void refresh();
  const timer = setInterval(() => void refresh(), opts.refreshMs ?? 5000);
  timer.unref?.();

  return {
    holder,
    refresh,
    async stop() {
      stopped = true;
      clearInterval(timer);
      await refreshing;
      await Promise.all([...running.values()].map((r) => r.leadership.stop()));
      running.clear();
    },
  };
}

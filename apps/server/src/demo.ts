import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '@steward/core/errors/app-error';
import { SYSTEM_ACTOR, type Resources } from '@steward/core/resources';
import { randomToken } from '@steward/core/shared/secrets';
import { countTenants, createTenant } from '@steward/core/tenants/tenant-service';

export const DEMO_SLUG = 'demo';
export const DEMO_OWNER = 'owner@demo.local';

/** The folders a tenant gets in the data directory. */
export async function ensureTenantFolders(
  dataDir: string,
  slug: string,
): Promise<{ inbox: string; vault: string }> {
  const base = path.join(dataDir, 'tenants', slug);
  const inbox = path.join(base, 'inbox');
  const vault = path.join(base, 'vault');
  await mkdir(inbox, { recursive: true });
  await mkdir(vault, { recursive: true });
  return { inbox, vault };
}

/**
 * On an empty database, create the demo tenant and its owner. Returns the sign-in details to
 * print once (the password only when it was generated here), or undefined when nothing was made.
 */
export async function provisionDemo(
  res: Resources,
  password: string | undefined,
): Promise<{ email: string; password: string | undefined; inbox: string } | undefined> {
  if ((await countTenants(res)) > 0) return undefined;
  const chosen = password ?? randomToken(20);
  try {
    await createTenant(res, SYSTEM_ACTOR, {
      slug: DEMO_SLUG,
      name: 'Demo Company',
      ownerEmail: DEMO_OWNER,
      ownerPassword: chosen,
      ownerName: 'Demo Owner',
    });
  } catch (error) {
    // Another process provisioned it at the same moment.
    if (error instanceof AppError && error.code === 'CONFLICT') return undefined;
    throw error;
  }
  const { inbox } = await ensureTenantFolders(res.dataDir, DEMO_SLUG);
  return { email: DEMO_OWNER, password: password ? undefined : chosen, inbox };
}

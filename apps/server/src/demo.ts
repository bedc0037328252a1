import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { AppError } from '@steward/core/errors/app-error';
import { createPlaybook, type PlaybookInput } from '@steward/core/planner/playbook-service';
import type { PlaybookStep } from '@steward/core/planner/playbook';
import { SYSTEM_ACTOR, type Resources } from '@steward/core/resources';
import { randomToken } from '@steward/core/shared/secrets';
import { countTenants, createTenant, updateTenant } from '@steward/core/tenants/tenant-service';

export const DEMO_SLUG = 'demo';
export const DEMO_OWNER = 'owner@demo.local';

/**
 * What the demo's invoice playbooks do: file a note in the vault and tell the owner (both low risk,
 * so they run at once), then "record the payment", labelled high risk so the approval policy
 * holds it for a person. That last step is the built-in `noop` tool on purpose: it works offline
 * with nothing configured, and it still shows the whole approval path (the approval is bound to
 * the exact action, and the step runs only after someone approves it). A real installation would
 * put email.send (with an SMTP connection) or http.request (to its accounting system) there.
 */
export const DEMO_INVOICE_STEPS: PlaybookStep[] = [
  {
    key: 'file_note',
    tool: 'vault.write_note',
    args: {
      title: 'Invoice - {{event.subject}}',
      body: 'From: {{event.from}}\nAmount: {{extracted.amount}} {{extracted.currency}}\n\n{{event.body}}',
      folder: 'Invoices',
    },
  },
  {
    key: 'tell_owner',
    tool: 'notify.user',
    args: {
      to: DEMO_OWNER,
      title: 'Invoice received: {{event.subject}}',
      body: 'Filed in the vault under Notes/Invoices. The payment waits for your approval.',
    },
    dependsOn: ['file_note'],
  },
  {
    key: 'record_payment',
    tool: 'noop',
    args: { note: 'record payment of {{extracted.amount}} {{extracted.currency}} for "{{event.subject}}"' },
    risk: 'high',
    dependsOn: ['file_note'],
  },
];

/**
 * The demo's playbooks: "invoice" in the subject (a file's title, heading or name) or in the text.
 * Two playbooks because a playbook's conditions must all hold; the first that matches plans the task.
 */
export const DEMO_PLAYBOOKS: PlaybookInput[] = [
  {
    name: 'Invoice received',
    description:
      'An event whose subject mentions an invoice: file it, tell the owner, and record the payment once approved.',
    priority: 100,
    when: { subject: { contains: 'invoice' } },
    steps: DEMO_INVOICE_STEPS,
  },
  {
    name: 'Invoice mentioned',
    description: 'The same for an event that mentions an invoice only in its text.',
    priority: 110,
    when: { body: { contains: 'invoice' } },
    steps: DEMO_INVOICE_STEPS,
  },
];

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
  let tenantId: string;
  try {
    ({ id: tenantId } = await createTenant(res, SYSTEM_ACTOR, {
      slug: DEMO_SLUG,
      name: 'Demo Company',
      ownerEmail: DEMO_OWNER,
      ownerPassword: chosen,
      ownerName: 'Demo Owner',
    }));
  } catch (error) {
    // Another process provisioned it at the same moment.
    if (error instanceof AppError && error.code === 'CONFLICT') return undefined;
    throw error;
  }
  // Moving a note from Pending_Approval/ to Approved/ in the vault decides as the owner.
  await updateTenant(res, tenantId, SYSTEM_ACTOR, { settings: { vault: { user: DEMO_OWNER } } });
  for (const playbook of DEMO_PLAYBOOKS) await createPlaybook(res, tenantId, SYSTEM_ACTOR, playbook);
  const { inbox } = await ensureTenantFolders(res.dataDir, DEMO_SLUG);
  return { email: DEMO_OWNER, password: password ? undefined : chosen, inbox };
}

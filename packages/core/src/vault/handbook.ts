import { open } from 'node:fs/promises';
import path from 'node:path';
import { readIfExists, vaultDir } from './vault-files.ts';

export const HANDBOOK_FILE = 'Company_Handbook.md';
/** The planner reads at most this much of the handbook. */
export const HANDBOOK_MAX_BYTES = 65_536;

export const HANDBOOK_STARTER = `# Company Handbook

These are the rules Steward follows for this company. Edit this file freely: Steward creates it
once and never overwrites it, and its planner reads it when it makes plans.

## How we work
- Be polite and brief in every message.
- Never pay an invoice that does not match a purchase order.
- Ask a person before sending anything to a new recipient.

## Approvals
- Move a file from Pending_Approval/ to Approved/ to approve it, or to Rejected/ to reject it.
  The decision is taken as the vault user configured in the tenant settings (\`vault.user\`).

## Contacts
- Add the people and companies Steward should know about here.
`;

/** Create Company_Handbook.md with the starter text unless it exists (never overwrites). */
export async function ensureHandbook(dir: string): Promise<boolean> {
  try {
    const handle = await open(path.join(dir, HANDBOOK_FILE), 'wx', 0o640);
    try {
      await handle.writeFile(HANDBOOK_STARTER);
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
}

/**
 * The tenant's rules as written in its Company_Handbook.md (for the planner), or null when there is
 * none. Read as data: whatever it says, it cannot change the approval policy.
 */
export async function readHandbook(dataDir: string, slug: string): Promise<string | null> {
  const text = await readIfExists(path.join(vaultDir(dataDir, slug), HANDBOOK_FILE), 16 * HANDBOOK_MAX_BYTES);
  return text === null ? null : text.slice(0, HANDBOOK_MAX_BYTES);
}

import { readdir, rename, stat } from 'node:fs/promises';
import path from 'node:path';
import { isUuid } from '@steward/db/database';
import { decideApproval } from '../approvals/approval-service.ts';
import { AppError } from '../errors/app-error.ts';
import { rolePermissions } from '../identity/permissions.ts';
import type { Resources } from '../resources.ts';
import {
  parseFrontMatter,
  readIfExists,
  removeIfExists,
  vaultDir,
  withFrontMatter,
  writeAtomic,
} from './vault-files.ts';
import type { VaultProblem } from './vault-render.ts';
import { isDecisionRequest, vaultUserOf } from './vault-sync.ts';

/** A file younger than this may still be being written (a copy rather than a move): wait. */
export const SETTLE_MS = 250;

export interface VaultUser {
  id: string;
  email: string;
}

/**
 * The member who decides approvals moved in the vault: tenant setting `vault.user` names an active
 * member (by e-mail) whose role holds approvals:decide. Otherwise the reason nobody can.
 */
export async function resolveVaultUser(
  res: Resources,
  tenantId: string,
): Promise<{ user: VaultUser } | { problem: string }> {
  return res.db.withTenant(tenantId, async (tx) => {
    const [tenant] = await tx<{ settings: Record<string, unknown> }[]>`
      select settings from tenants where id = ${tenantId}`;
    const email = vaultUserOf(tenant?.settings ?? {});
    if (!email) {
      return {
        problem:
          'no vault user is configured: set the tenant setting vault.user to the e-mail address of a member who may decide approvals',
      };
    }
    const [m] = await tx<
      {
        id: string;
        email: string;
        user_status: string;
        status: string;
        name: string;
        builtin: boolean;
        permissions: string[];
      }[]
    >`
      select u.id, u.email, u.status as user_status, m.status, r.name, r.builtin, r.permissions
      from memberships m
        join users u on u.id = m.user_id
        join roles r on r.tenant_id = m.tenant_id and r.id = m.role_id
      where m.tenant_id = ${tenantId} and u.email = ${email}`;
    if (!m || m.status !== 'active' || m.user_status !== 'active') {
      return { problem: `the vault user ${email} is not an active member of this tenant` };
    }
    if (!rolePermissions(m).includes('approvals:decide')) {
      return {
        problem: `the vault user ${email} may not decide approvals (role ${m.name} lacks approvals:decide)`,
      };
    }
    return { user: { id: m.id, email: m.email } };
  });
}

export interface DecisionOutcome {
  file: string;
  approvalId: string | null;
  decision: 'approve' | 'reject';
  decided: boolean;
  message: string;
}

export interface DecisionScan {
  outcomes: DecisionOutcome[];
  /** Some files were too fresh to read: scan again shortly. */
  again: boolean;
}

/**
 * Decide the approvals whose notes a person moved into Approved/ or Rejected/, as the tenant's
 * vault user. Anything that cannot be decided (no vault user, no permission, already decided,
 * changed action, self-approval) is not decided: the note goes back to Pending_Approval/ and a
 * `<name>.error.md` beside the moved file says why.
 */
export async function processDecisionFiles(
  res: Resources,
  tenantId: string,
  slug: string,
  opts: { problems?: VaultProblem[]; ignore?: Map<string, number> } = {},
): Promise<DecisionScan> {
  const root = vaultDir(res.dataDir, slug);
  const outcomes: DecisionOutcome[] = [];
  let again = false;
  let user: Awaited<ReturnType<typeof resolveVaultUser>> | undefined;
  for (const folder of ['Approved', 'Rejected'] as const) {
    const dir = path.join(root, folder);
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (!entry.isFile() || !entry.name.endsWith('.md') || entry.name.endsWith('.error.md')) continue;
      if (entry.name.startsWith('.')) continue;
      const file = path.join(dir, entry.name);
      const st = await stat(file).catch(() => null);
      if (!st) continue;
      if (Date.now() - st.mtimeMs < SETTLE_MS) {
        again = true;
        continue;
      }
      if (opts.ignore?.get(file) === st.mtimeMs) continue;
      const text = await readIfExists(file);
      const note = text ? parseFrontMatter(text) : null;
      if (!note || !isDecisionRequest(folder, note.data)) continue;
      const decision = folder === 'Approved' ? 'approve' : 'reject';
      const rel = `${folder}/${entry.name}`;
      const approvalId = note.data.approval_id as string;

      const refuse = async (message: string, audit = true) => {
        outcomes.push({
          file: rel,
          approvalId: isUuid(approvalId) ? approvalId : null,
          decision,
          decided: false,
          message,
        });
        opts.problems?.unshift({ at: new Date(), file: rel, message });
        if (opts.problems && opts.problems.length > 20) opts.problems.length = 20;
        const errorNote = path.join(dir, entry.name.replace(/\.md$/, '.error.md'));
        await writeAtomic(
          errorNote,
          withFrontMatter(
            {
              type: 'vault-error',
              file: rel,
              approval_id: isUuid(approvalId) ? approvalId : null,
              at: new Date().toISOString(),
            },
            `# Not ${decision === 'approve' ? 'approved' : 'rejected'}\n\n${message}\n\nNothing was decided. ${
              isUuid(approvalId)
                ? 'The note went back to Pending_Approval/ if the approval is still waiting.'
                : ''
            }\nDelete this note when you have read it.`,
          ),
        );
        if (isUuid(approvalId)) {
          await rename(file, path.join(root, 'Pending_Approval', `${approvalId}.md`)).catch(() => {});
        } else {
          opts.ignore?.set(file, st.mtimeMs);
        }
        if (audit && isUuid(approvalId)) {
          await res.db
            .withTenant(tenantId, (tx) =>
              res.audit.append(tx, tenantId, {
                actorType: 'vault',
                actorLabel: 'vault',
                action: 'approval.vault_decision_refused',
                targetType: 'approval',
                targetId: approvalId,
                outcome: 'denied',
                details: { channel: 'vault', decision, file: rel, reason: message },
              }),
            )
            .catch(() => {});
        }
      };

      if (!isUuid(approvalId)) {
        await refuse('the note has no valid approval_id in its front matter', false);
        continue;
      }
      const [approval] = await res.db.withTenant(
        tenantId,
        (tx) => tx<{ status: string; action_hash: string }[]>`
          select status, action_hash from approvals where tenant_id = ${tenantId} and id = ${approvalId}`,
      );
      if (!approval) {
        await refuse(`approval ${approvalId} does not exist in this tenant`, false);
        continue;
      }
      if (approval.status !== 'pending') {
        await refuse(`approval ${approvalId} was already ${approval.status}; it cannot be decided again`);
        continue;
      }
      if (note.data.action_hash !== approval.action_hash) {
        await refuse(
          'the action_hash in the note does not match the approval: the action changed or the note was edited. Decide the current note in Pending_Approval/.',
        );
        continue;
      }
      user ??= await resolveVaultUser(res, tenantId);
      if ('problem' in user) {
        await refuse(user.problem);
        continue;
      }
      try {
        const result = await decideApproval(
          res,
          tenantId,
          { type: 'user', id: user.user.id, label: `${user.user.email} (vault)` },
          approvalId,
          { decision, comment: `decided in the vault: the note was moved to ${folder}/` },
        );
        await removeIfExists(file);
        await removeIfExists(path.join(dir, entry.name.replace(/\.md$/, '.error.md')));
        outcomes.push({
          file: rel,
          approvalId,
          decision,
          decided: true,
          message: `approval ${result.approval.status} by ${user.user.email} (vault)`,
        });
      } catch (error) {
        if (!(error instanceof AppError)) throw error;
        await refuse(error.message);
      }
    }
  }
  return { outcomes, again };
}

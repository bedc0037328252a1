import type { Tx } from '@steward/db/database';
import { AppError, conflict, forbidden, invalid, notFound } from '../errors/app-error.ts';
import { auditActor, type Actor, type Resources } from '../resources.ts';
import { randomToken, sha256 } from '../shared/secrets.ts';
import { hashPassword, passwordProblem } from './passwords.ts';
import type { Permission } from './permissions.ts';
import { assertCanGrant, getRoleByName } from './role-service.ts';
import { normaliseEmail } from './user-service.ts';

/** How long an invitation can be accepted. */
export const INVITATION_TTL_MS = 7 * 24 * 3600 * 1000;

/** `inv_<tenant id, 32 hex>_<43 base62>`: the tenant part routes the lookup, the rest is the secret. */
const TOKEN_PATTERN = /^inv_([0-9a-f]{32})_([A-Za-z0-9]{43})$/;

export interface Invitation {
  id: string;
  email: string;
  role: string;
  status: 'pending' | 'accepted' | 'revoked' | 'expired';
  createdAt: string;
  expiresAt: string;
  acceptedAt: string | null;
}

interface InvitationRow {
  id: string;
  email: string;
  role: string;
  created_at: Date;
  expires_at: Date;
  accepted_at: Date | null;
  revoked_at: Date | null;
}

const toInvitation = (r: InvitationRow): Invitation => ({
  id: r.id,
  email: r.email,
  role: r.role,
  status: r.accepted_at
    ? 'accepted'
    : r.revoked_at
      ? 'revoked'
      : r.expires_at.getTime() <= Date.now()
        ? 'expired'
        : 'pending',
  createdAt: r.created_at.toISOString(),
  expiresAt: r.expires_at.toISOString(),
  acceptedAt: r.accepted_at?.toISOString() ?? null,
});

const SELECT = (tx: Tx) => tx`
  select i.id, i.email, r.name as role, i.created_at, i.expires_at, i.accepted_at, i.revoked_at
  from invitations i join roles r on r.tenant_id = i.tenant_id and r.id = i.role_id`;

/** Invite an address with a role. The token is returned here only; the database keeps its hash. */
export async function createInvitation(
  res: Resources,
  tenantId: string,
  actor: Actor,
  input: { email: string; role: string; createdBy?: string | undefined },
  granter?: ReadonlySet<Permission>,
): Promise<{ invitation: Invitation; token: string }> {
  const email = normaliseEmail(input.email);
  const token = `inv_${tenantId.replaceAll('-', '')}_${randomToken(43)}`;
  return res.db.withTenant(tenantId, async (tx) => {
    const role = await getRoleByName(tx, tenantId, input.role);
    if (granter) assertCanGrant(granter, role);
    const [row] = await tx<{ id: string }[]>`
      insert into invitations (tenant_id, email, role_id, token_hash, created_by, expires_at)
      values (${tenantId}, ${email}, ${role.id}, ${sha256(token)}, ${input.createdBy ?? null},
              now() + ${INVITATION_TTL_MS / 1000} * interval '1 second')
      returning id`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'invitation.created',
      targetType: 'invitation',
      targetId: row!.id,
      details: { email, role: role.name },
    });
    const [inv] = await tx<
      InvitationRow[]
    >`${SELECT(tx)} where i.tenant_id = ${tenantId} and i.id = ${row!.id}`;
    return { invitation: toInvitation(inv!), token };
  });
}

/** The tenant's invitations, newest first: pending ones unless `all`. */
export async function listInvitations(
  res: Resources,
  tenantId: string,
  q: { all?: boolean | undefined },
): Promise<{ items: Invitation[] }> {
  return res.db.withTenant(tenantId, async (tx) => {
    const rows = await tx<InvitationRow[]>`
      ${SELECT(tx)} where i.tenant_id = ${tenantId}
        ${q.all ? tx`` : tx`and i.accepted_at is null and i.revoked_at is null and i.expires_at > now()`}
      order by i.created_at desc, i.id limit 500`;
    return { items: rows.map(toInvitation) };
  });
}

export async function revokeInvitation(
  res: Resources,
  tenantId: string,
  actor: Actor,
  id: string,
): Promise<void> {
  await res.db.withTenant(tenantId, async (tx) => {
    const [row] = await tx<{ email: string; accepted_at: Date | null; revoked_at: Date | null }[]>`
      select email, accepted_at, revoked_at from invitations where tenant_id = ${tenantId} and id = ${id} for update`;
    if (!row) throw notFound('invitation');
    if (row.accepted_at) throw conflict('the invitation was already accepted');
    if (row.revoked_at) throw conflict('the invitation is already revoked');
    await tx`update invitations set revoked_at = now() where tenant_id = ${tenantId} and id = ${id}`;
    await res.audit.append(tx, tenantId, {
      ...auditActor(actor),
      action: 'invitation.revoked',
      targetType: 'invitation',
      targetId: id,
      details: { email: row.email },
    });
  });
}

export interface AcceptResult {
  tenant: { id: string; slug: string; name: string };
  email: string;
}

const unusable = () =>
  new AppError('NOT_FOUND', 'this invitation is not valid: it may have expired or been revoked');

/**
 * Accept an invitation. Signed in (`userId`), the account whose email was invited joins the tenant.
 * Not signed in, a password creates the account of a new address and its membership; for an
 * address that already has an account nothing changes (its password is never set from here) and
 * the answer is the same, so the token never tells whether an account exists: that person signs in
 * with their own password and accepts again, signed in.
 */
export async function acceptInvitation(
  res: Resources,
  actor: Actor,
  input: {
    token: string;
    userId?: string | undefined;
    name?: string | undefined;
    password?: string | undefined;
  },
): Promise<AcceptResult> {
  const m = TOKEN_PATTERN.exec(input.token);
  if (!m) throw unusable();
  const hex = m[1]!;
  const tenantId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  if (input.userId === undefined) {
    if (input.password === undefined)
      throw invalid('body/password is required to create an account (or sign in first)');
    const problem = passwordProblem(input.password);
    if (problem) throw invalid('body/' + problem);
  }
  // A token that cannot be used costs one indexed lookup, never a password hash.
  const usable = await res.db.withTenant(
    tenantId,
    (tx) => tx`
      select 1 from invitations where tenant_id = ${tenantId} and token_hash = ${sha256(input.token)}
        and accepted_at is null and revoked_at is null and expires_at > now()`,
  );
  if (usable.length === 0) throw unusable();
  // Hashed whether or not the address has an account, so the timing tells nothing either.
  const passwordHash = input.userId === undefined ? await hashPassword(input.password!) : undefined;
  return res.db.withSystemAccess(
    async (tx) => {
      const [inv] = await tx<
        { id: string; email: string; role_id: string; role: string; slug: string; tenant_name: string }[]
      >`
        select i.id, i.email, i.role_id, r.name as role, t.slug, t.name as tenant_name
        from invitations i
        join roles r on r.tenant_id = i.tenant_id and r.id = i.role_id
        join tenants t on t.id = i.tenant_id
        where i.tenant_id = ${tenantId} and i.token_hash = ${sha256(input.token)}
          and i.accepted_at is null and i.revoked_at is null and i.expires_at > now()
        for update of i`;
      if (!inv) throw unusable();
      const result = { tenant: { id: tenantId, slug: inv.slug, name: inv.tenant_name }, email: inv.email };
      let userId: string;
      if (input.userId !== undefined) {
        const [me] = await tx<{ email: string }[]>`select email from users where id = ${input.userId}`;
        if (!me || me.email !== inv.email)
          throw forbidden('this invitation is for another email address: sign in with the invited account');
        userId = input.userId;
      } else {
        const [created] = await tx<{ id: string }[]>`
          insert into users (email, name, password_hash) values (${inv.email}, ${input.name ?? ''}, ${passwordHash!})
          on conflict (email) do nothing returning id`;
        // An existing account: the same answer, and nothing changes until its owner signs in.
        if (!created) return result;
        userId = created.id;
      }
      const [member] = await tx<{ id: string }[]>`
        insert into memberships (tenant_id, user_id, role_id) values (${tenantId}, ${userId}, ${inv.role_id})
        on conflict (tenant_id, user_id) do nothing returning id`;
      await tx`update invitations set accepted_at = now(), accepted_by = ${userId}
               where tenant_id = ${tenantId} and id = ${inv.id}`;
      await res.audit.append(tx, tenantId, {
        ...auditActor({ ...actor, type: 'user', id: userId, label: actor.label ?? inv.email }),
        action: 'invitation.accepted',
        targetType: 'invitation',
        targetId: inv.id,
        details: {
          email: inv.email,
          role: inv.role,
          newAccount: input.userId === undefined,
          alreadyMember: !member,
        },
      });
      return result;
    },
    { tenantId },
  );
}

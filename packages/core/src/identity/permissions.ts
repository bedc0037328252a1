/** Every permission a role can hold. Routes declare one of these (or a special access level). */
export const PERMISSIONS = {
  'tenant:read': 'see the tenant and its settings',
  'tenant:manage': 'change tenant settings',
  'tenant:owner': 'grant or revoke the owner role',
  'users:read': 'list users and memberships',
  'users:manage': 'add, change and remove users',
  'roles:read': 'list roles',
  'roles:manage': 'create, change and delete custom roles',
  'apikeys:read': 'list API keys',
  'apikeys:manage': 'create and revoke API keys',
  'audit:read': 'read and verify the audit log',
  'tasks:read': 'see tasks, plans and steps',
  'tasks:manage': 'create, cancel and retry tasks',
  'events:create': 'submit events',
  'approvals:read': 'see approvals',
  'approvals:decide': 'approve or reject actions',
  'playbooks:read': 'see playbooks',
  'playbooks:manage': 'edit playbooks',
  'connections:read': 'see connections and MCP servers',
  'connections:manage': 'add and change connections and MCP servers',
  'sso:read': 'see single sign-on connections and SCIM settings (never secrets)',
  'sso:manage': 'configure single sign-on, SCIM settings and SCIM tokens',
  'privacy:read': 'see consent records and retention policies',
  'privacy:manage': 'record consent and set retention policies',
  'privacy:export': 'export and download everything about the tenant or a user',
  'privacy:erase': 'erase a user (GDPR)',
  'siem:read': 'see SIEM destinations and their forwarding status',
  'siem:manage': 'add, change and remove SIEM destinations',
  'reports:read': 'download compliance reports (access review, configuration changes, violations)',
} as const;

export type Permission = keyof typeof PERMISSIONS;
export const ALL_PERMISSIONS = Object.keys(PERMISSIONS) as Permission[];

export function isPermission(value: string): value is Permission {
  return Object.hasOwn(PERMISSIONS, value);
}

const READ_ALL: Permission[] = ALL_PERMISSIONS.filter((p) => p.endsWith(':read'));

export const BUILTIN_ROLES: Record<string, { description: string; permissions: Permission[] }> = {
  owner: { description: 'Everything, including granting the owner role', permissions: ALL_PERMISSIONS },
  admin: {
    description: 'Everything except granting the owner role',
    permissions: ALL_PERMISSIONS.filter((p) => p !== 'tenant:owner'),
  },
  approver: {
    description: 'Sees the work and decides approvals',
    permissions: ['tenant:read', 'tasks:read', 'approvals:read', 'approvals:decide', 'playbooks:read'],
  },
  member: {
    description: 'Submits work and follows it',
    permissions: [
      'tenant:read',
      'tasks:read',
      'tasks:manage',
      'events:create',
      'approvals:read',
      'playbooks:read',
    ],
  },
  viewer: {
    description: 'Read-only view of the work',
    permissions: ['tenant:read', 'tasks:read', 'approvals:read', 'playbooks:read'],
  },
  auditor: {
    description: 'Reads everything, including the audit log; changes nothing',
    permissions: READ_ALL,
  },
};

export type BuiltinRoleName = keyof typeof BUILTIN_ROLES;

export function isBuiltinRole(name: string): boolean {
  return Object.hasOwn(BUILTIN_ROLES, name);
}

/** Permissions of a role row: built-in roles take theirs from code, custom roles from the row. */
export function rolePermissions(role: {
  name: string;
  builtin: boolean;
  permissions: string[];
}): Permission[] {
  if (role.builtin) return BUILTIN_ROLES[role.name]?.permissions ?? [];
  return role.permissions.filter(isPermission);
}

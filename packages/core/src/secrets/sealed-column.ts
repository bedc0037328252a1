import type { Tx } from '@steward/db/database';
import type { CredentialVault } from './envelope.ts';

/** A piece of SQL to splice into a statement. */
type Fragment = ReturnType<Tx['unsafe']>;

/** What a PATCH did to a write-only secret, as the audit entry records it (never the value). */
export type SecretChange = 'set' | 'removed' | 'unchanged';

/**
 * The `, <column>_ciphertext = …, <column>_nonce = …` fragment of an UPDATE for one write-only
 * secret: a string seals the new value (bound to tenant and `credentialId`), null clears it,
 * undefined keeps it.
 */
export async function sealedColumnUpdate(
  tx: Tx,
  vault: CredentialVault,
  target: { tenantId: string; credentialId: string; column: 'secret' | 'client_key' },
  value: string | null | undefined,
): Promise<{ sql: Fragment; change: SecretChange }> {
  const ciphertext = tx(`${target.column}_ciphertext`);
  const nonce = tx(`${target.column}_nonce`);
  if (typeof value === 'string') {
    const sealed = await vault.encrypt(tx, target.tenantId, target.credentialId, value);
    return {
      sql: tx`, ${ciphertext} = ${sealed.ciphertext}, ${nonce} = ${sealed.nonce}`,
      change: 'set',
    };
  }
  if (value === null) return { sql: tx`, ${ciphertext} = null, ${nonce} = null`, change: 'removed' };
  return { sql: tx``, change: 'unchanged' };
}

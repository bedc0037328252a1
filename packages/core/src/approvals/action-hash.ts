import { createHash } from 'node:crypto';
import { canonicalJson } from '../crypto/canonical-json.ts';

/**
 * The hash an approval is bound to: SHA-256 of the canonical JSON of the exact tool and arguments.
 * The executor recomputes it right before the call; anything else needs a new approval.
 */
export function actionHash(tool: string, args: unknown): string {
  return createHash('sha256').update(canonicalJson({ tool, args })).digest('hex');
}

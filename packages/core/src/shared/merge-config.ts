/** A config object after a PATCH of some of its keys: a null value removes the key. */
export function mergeConfig(
  current: Record<string, unknown>,
  patch: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const config = { ...current };
  for (const [k, v] of Object.entries(patch ?? {})) {
    if (v === null) delete config[k];
    else config[k] = v;
  }
  return config;
}

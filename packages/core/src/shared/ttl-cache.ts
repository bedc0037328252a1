/** A small in-memory cache whose entries expire after `ttlMs` (bounded in size). */
export class TtlCache<V> {
  readonly #map = new Map<string, { value: V; expires: number }>();
  readonly #ttlMs: number;
  readonly #max: number;

  constructor(ttlMs: number, max = 10_000) {
    this.#ttlMs = ttlMs;
    this.#max = max;
  }

  get(key: string): V | undefined {
    const hit = this.#map.get(key);
    if (!hit) return undefined;
    if (hit.expires <= Date.now()) {
      this.#map.delete(key);
      return undefined;
    }
    return hit.value;
  }

  set(key: string, value: V): void {
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value as string);
    this.#map.set(key, { value, expires: Date.now() + this.#ttlMs });
  }

  delete(key: string): void {
    this.#map.delete(key);
  }

  deleteWhere(predicate: (key: string) => boolean): void {
    for (const key of this.#map.keys()) if (predicate(key)) this.#map.delete(key);
  }

  clear(): void {
    this.#map.clear();
  }
}

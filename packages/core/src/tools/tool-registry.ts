import type { Tool } from './tool.ts';

/**
 * The tools an installation offers. A tenant may narrow them with the `tools.allowed` setting
 * (a list of tool names); everything else is unavailable to its planner and executor.
 */
export class ToolRegistry {
  readonly #tools = new Map<string, Tool>();

  /** Arguments reach a tool only after validation against its own schema, hence the cast. */
  register<A>(tool: Tool<A>): this {
    if (this.#tools.has(tool.name)) throw new Error(`tool ${tool.name} is registered twice`);
    this.#tools.set(tool.name, tool as unknown as Tool);
    return this;
  }

  all(): Tool[] {
    return [...this.#tools.values()];
  }

  forTenant(settings: Record<string, unknown>): Map<string, Tool> {
    const tools = settings.tools as { allowed?: unknown } | undefined;
    const allowed = Array.isArray(tools?.allowed)
      ? new Set(tools.allowed.filter((t) => typeof t === 'string'))
      : undefined;
    return new Map([...this.#tools].filter(([name]) => !allowed || allowed.has(name)));
  }
}

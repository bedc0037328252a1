/** How the planner reaches a language model (from STEWARD_LLM_* and the provider's variables). */
export interface LlmSettings {
  /** `rules`: playbooks only, no model is ever called. */
  provider: 'rules' | 'anthropic' | 'openai';
  anthropicApiKey?: string | undefined;
  /** The Anthropic API root including `/v1` (default https://api.anthropic.com/v1). */
  anthropicBaseUrl?: string | undefined;
  openaiApiKey?: string | undefined;
  /** An OpenAI-compatible API root including `/v1` (Ollama: http://127.0.0.1:11434/v1). */
  openaiBaseUrl?: string | undefined;
  model?: string | undefined;
  /** Per model call (default 60 s). */
  timeoutMs?: number | undefined;
}

export const DEFAULT_MODELS = {
  anthropic: 'claude-sonnet-4-5',
  openai: 'gpt-4.1-mini',
} as const;

/** The settings when a model is configured, otherwise undefined (playbooks only). */
export function llmConfigured(
  llm: LlmSettings | undefined,
): (LlmSettings & { provider: 'anthropic' | 'openai' }) | undefined {
  if (!llm || llm.provider === 'rules') return undefined;
  return llm as LlmSettings & { provider: 'anthropic' | 'openai' };
}

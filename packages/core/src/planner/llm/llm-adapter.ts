import { createAnthropic } from '@ai-sdk/anthropic';
import { createOpenAI } from '@ai-sdk/openai';
import {
  APICallError,
  generateText,
  jsonSchema,
  tool,
  ToolChoiceViolationError,
  wrapLanguageModel,
  type ModelMessage,
} from 'ai';
import { DEFAULT_MODELS, type LlmSettings } from './llm-settings.ts';

/** One turn of a planning conversation, independent of any provider's wire format. */
export type Turn =
  | { role: 'user'; text: string }
  | { role: 'assistant'; text: string; call?: { id: string; input: unknown } | undefined }
  | { role: 'tool_error'; callId: string; text: string };

export interface ToolSpec {
  name: string;
  description: string;
  /** JSON Schema of the tool's input. */
  schema: Record<string, unknown>;
}

export interface ModelUsage {
  inputTokens: number;
  outputTokens: number;
}

export interface ToolTurn {
  /** The model's call of the requested tool (its input is untrusted until validated). */
  call?: { id: string; input: unknown; error?: string | undefined } | undefined;
  /** Any prose the model wrote besides (or instead of) the call. */
  text: string;
  usage: ModelUsage;
}

/** A provider adapter: one model turn that is required to call one tool. */
export interface LlmAdapter {
  readonly provider: 'anthropic' | 'openai';
  readonly model: string;
  callTool(req: { system: string; turns: Turn[]; tool: ToolSpec; signal?: AbortSignal }): Promise<ToolTurn>;
}

/** A failure talking to the provider (network, HTTP status, malformed response), with a safe message. */
export class LlmCallError extends Error {
  /** Tokens spent before the failure (a provider may fail after answering, e.g. on a bad body). */
  readonly usage: ModelUsage;
  constructor(message: string, opts: { usage?: ModelUsage } = {}) {
    super(message);
    this.name = 'LlmCallError';
    this.usage = opts.usage ?? { inputTokens: 0, outputTokens: 0 };
  }
}

function toMessages(turns: Turn[], toolName: string): ModelMessage[] {
  return turns.map((t): ModelMessage => {
    if (t.role === 'user') return { role: 'user', content: t.text };
    if (t.role === 'tool_error')
      return {
        role: 'tool',
        content: [
          {
            type: 'tool-result',
            toolCallId: t.callId,
            toolName,
            output: { type: 'error-text', value: t.text },
          },
        ],
      };
    return {
      role: 'assistant',
      content: [
        ...(t.text ? [{ type: 'text' as const, text: t.text }] : []),
        ...(t.call
          ? [{ type: 'tool-call' as const, toolCallId: t.call.id, toolName, input: t.call.input }]
          : []),
      ],
    };
  });
}

/** Remove anything that looks like a credential from a provider's error text. */
export function redactSecrets(text: string, secrets: (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  return out.replace(/\b(?:sk|key|api)[-_][A-Za-z0-9_*.-]{6,}/gi, '[redacted]').slice(0, 500);
}

type LanguageModelV3 = Parameters<typeof wrapLanguageModel>[0]['model'];

/** The ai SDK behind both adapters: the providers differ only in how the model is reached. */
class AiSdkAdapter implements LlmAdapter {
  constructor(
    readonly provider: 'anthropic' | 'openai',
    readonly model: string,
    private readonly languageModel: LanguageModelV3,
    private readonly secrets: (string | undefined)[],
    private readonly timeoutMs: number,
  ) {}

  async callTool(req: { system: string; turns: Turn[]; tool: ToolSpec; signal?: AbortSignal }) {
    const signals = [AbortSignal.timeout(this.timeoutMs), ...(req.signal ? [req.signal] : [])];
    // Tokens are counted at the model boundary, so they are known even when the SDK rejects the answer.
    const usage: ModelUsage = { inputTokens: 0, outputTokens: 0 };
    const model = wrapLanguageModel({
      model: this.languageModel,
      middleware: {
        specificationVersion: 'v3',
        wrapGenerate: async ({ doGenerate }) => {
          const result = await doGenerate();
          usage.inputTokens += result.usage.inputTokens.total ?? 0;
          usage.outputTokens += result.usage.outputTokens.total ?? 0;
          return result;
        },
      },
    });
    try {
      const result = await generateText({
        model,
        system: req.system,
        messages: toMessages(req.turns, req.tool.name),
        // No execute function: the SDK returns the call and runs nothing.
        tools: {
          [req.tool.name]: tool({
            description: req.tool.description,
            inputSchema: jsonSchema(req.tool.schema),
          }),
        },
        toolChoice: { type: 'tool', toolName: req.tool.name },
        maxOutputTokens: 4096,
        temperature: 0,
        maxRetries: 2,
        abortSignal: AbortSignal.any(signals),
      });
      const call = result.toolCalls.find((c) => c.toolName === req.tool.name);
      return {
        call: call
          ? {
              id: call.toolCallId,
              input: call.input,
              error:
                'invalid' in call && call.invalid
                  ? redactSecrets(String((call as { error?: unknown }).error ?? 'invalid input'), [])
                  : undefined,
            }
          : undefined,
        text: result.text,
        usage,
      };
    } catch (error) {
      // The model answered without calling the tool: an invalid answer, not a provider failure.
      if (ToolChoiceViolationError.isInstance(error)) {
        const text = (error.content ?? [])
          .map((part) => (part.type === 'text' ? part.text : ''))
          .join('')
          .slice(0, 2000);
        return { call: undefined, text, usage };
      }
      const status = APICallError.isInstance(error) && error.statusCode ? ` (HTTP ${error.statusCode})` : '';
      const message = error instanceof Error ? error.message : String(error);
      throw new LlmCallError(
        `the ${this.provider} model call failed${status}: ${redactSecrets(message, this.secrets)}`,
        { usage },
      );
    }
  }
}

export function anthropicAdapter(s: LlmSettings): LlmAdapter {
  const model = s.model ?? DEFAULT_MODELS.anthropic;
  const provider = createAnthropic({
    apiKey: s.anthropicApiKey ?? '',
    ...(s.anthropicBaseUrl ? { baseURL: s.anthropicBaseUrl } : {}),
  });
  return new AiSdkAdapter('anthropic', model, provider(model), [s.anthropicApiKey], s.timeoutMs ?? 60_000);
}

/** OpenAI's Chat Completions API, which Ollama, vLLM and most local servers also speak. */
export function openaiAdapter(s: LlmSettings): LlmAdapter {
  const model = s.model ?? DEFAULT_MODELS.openai;
  const provider = createOpenAI({
    // Local servers (Ollama, vLLM) ignore the key, but the client insists on one.
    apiKey: s.openaiApiKey ?? (s.openaiBaseUrl ? 'no-key' : ''),
    ...(s.openaiBaseUrl ? { baseURL: s.openaiBaseUrl } : {}),
  });
  return new AiSdkAdapter('openai', model, provider.chat(model), [s.openaiApiKey], s.timeoutMs ?? 60_000);
}

export function createAdapter(s: LlmSettings & { provider: 'anthropic' | 'openai' }): LlmAdapter {
  return s.provider === 'anthropic' ? anthropicAdapter(s) : openaiAdapter(s);
}

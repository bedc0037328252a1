import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake model answers next: a tool call with this input, prose only, or (OpenAI) raw arguments. */
export type FakeAnswer = { plan: unknown; text?: string } | { text: string } | { rawArguments: string };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  body: any;
}

/** A loopback server speaking one provider's real wire format, answering from a queue. */
export interface FakeLlmServer {
  /** The API root including /v1, for the adapter's base URL. */
  baseUrl: string;
  requests: RecordedRequest[];
  answers: FakeAnswer[];
  /** Tokens reported for every answer. */
  usage: { input: number; output: number };
  close(): Promise<void>;
}

type Render = (answer: FakeAnswer, body: Record<string, unknown>, n: number, s: FakeLlmServer) => unknown;

async function start(route: string, render: Render, usage: { input: number; output: number }) {
  let n = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown>;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
      } catch {
        body = {};
      }
      fake.requests.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers, body });
      const send = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
      };
      if (req.method !== 'POST' || req.url !== route)
        return send(404, { error: { type: 'not_found_error', message: `no route ${req.url}` } });
      const answer = fake.answers.shift();
      if (!answer)
        return send(400, {
          error: { type: 'invalid_request_error', message: 'the fake has no answer queued' },
        });
      n += 1;
      send(200, render(answer, body, n, fake));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const fake: FakeLlmServer = {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    requests: [],
    answers: [],
    usage,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return fake;
}

/** The first tool the request offered (the planner offers exactly one: propose_plan). */
function offeredToolName(body: Record<string, unknown>, openai: boolean): string {
  const tools = (body.tools ?? []) as { name?: string; function?: { name?: string } }[];
  return (openai ? tools[0]?.function?.name : tools[0]?.name) ?? 'propose_plan';
}

/** Anthropic Messages API: POST /v1/messages, tool_use content blocks, usage in input/output_tokens. */
export function startFakeAnthropic(usage = { input: 321, output: 54 }): Promise<FakeLlmServer> {
  return start(
    '/v1/messages',
    (answer, body, n, s) => {
      const content: unknown[] = [];
      if ('text' in answer && answer.text) content.push({ type: 'text', text: answer.text });
      if ('plan' in answer)
        content.push({
          type: 'tool_use',
          id: `toolu_${n}`,
          name: offeredToolName(body, false),
          input: answer.plan,
        });
      return {
        id: `msg_${n}`,
        type: 'message',
        role: 'assistant',
        model: body.model,
        content,
        stop_reason: 'plan' in answer ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: s.usage.input, output_tokens: s.usage.output },
      };
    },
    usage,
  );
}

/** OpenAI Chat Completions: POST /v1/chat/completions, message.tool_calls, usage in prompt/completion_tokens. */
export function startFakeOpenAI(usage = { input: 210, output: 40 }): Promise<FakeLlmServer> {
  return start(
    '/v1/chat/completions',
    (answer, body, n, s) => {
      const args =
        'rawArguments' in answer
          ? answer.rawArguments
          : 'plan' in answer
            ? JSON.stringify(answer.plan)
            : undefined;
      return {
        id: `chatcmpl-${n}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: body.model,
        choices: [
          {
            index: 0,
            message: {
              role: 'assistant',
              content: 'text' in answer ? (answer.text ?? null) : null,
              ...(args === undefined
                ? {}
                : {
                    tool_calls: [
                      {
                        id: `call_${n}`,
                        type: 'function',
                        function: { name: offeredToolName(body, true), arguments: args },
                      },
                    ],
                  }),
            },
            finish_reason: args === undefined ? 'stop' : 'tool_calls',
          },
        ],
        usage: {
          prompt_tokens: s.usage.input,
          completion_tokens: s.usage.output,
          total_tokens: s.usage.input + s.usage.output,
        },
      };
    },
    usage,
  );
}

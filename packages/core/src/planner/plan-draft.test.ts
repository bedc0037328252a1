import { Type } from '@sinclair/typebox';
import { describe, expect, it } from 'vitest';
import type { Tool } from '../tools/tool.ts';
import { MAX_STEPS, validateDraft, type DraftStep, type PlanDraft } from './plan-draft.ts';

const tool = (name: string, args = Type.Object({}, { additionalProperties: false })): Tool => ({
  name,
  description: name,
  risk: 'low',
  retryable: true,
  args,
  preview: () => [],
  execute: async () => ({}),
});

const tools = new Map<string, Tool>([
  [
    'noop',
    tool('noop', Type.Object({ note: Type.Optional(Type.String()) }, { additionalProperties: false })),
  ],
  [
    'email.send',
    tool(
      'email.send',
      Type.Object(
        {
          to: Type.String({ minLength: 3 }),
          subject: Type.String({ minLength: 1 }),
          count: Type.Optional(Type.Integer()),
        },
        { additionalProperties: false },
      ),
    ),
  ],
]);

const step = (key: string, over: Partial<DraftStep> = {}): DraftStep => ({
  key,
  tool: 'noop',
  args: {},
  dependsOn: [],
  ...over,
});
const plan = (...steps: DraftStep[]): PlanDraft => ({ summary: 's', steps });

describe('validateDraft', () => {
  it('accepts a DAG of known tools with valid arguments (diamonds are fine)', () => {
    expect(
      validateDraft(
        plan(
          step('a'),
          step('b', { dependsOn: ['a'] }),
          step('c', { dependsOn: ['a'], tool: 'email.send', args: { to: 'x@y.test', subject: 'hi' } }),
          step('d', { dependsOn: ['b', 'c'], compensation: { tool: 'noop', args: { note: 'undo' } } }),
        ),
        tools,
      ),
    ).toEqual([]);
  });

  it('refuses an empty plan and one with too many steps', () => {
    expect(validateDraft(plan(), tools)).toEqual(['the plan has no steps']);
    const many = Array.from({ length: MAX_STEPS + 1 }, (_, i) => step(`s${i}`));
    expect(validateDraft(plan(...many), tools)).toEqual([`the plan has more than ${MAX_STEPS} steps`]);
  });

  it('refuses duplicate keys', () => {
    expect(validateDraft(plan(step('a'), step('a')), tools)).toEqual(['step key "a" is used twice']);
  });

  it('refuses tools the tenant does not have, also as compensation', () => {
    expect(validateDraft(plan(step('a', { tool: 'shell.exec' })), tools)).toEqual([
      'step "a": tool "shell.exec" is not available to this tenant',
    ]);
    expect(validateDraft(plan(step('a', { compensation: { tool: 'wire.money', args: {} } })), tools)).toEqual(
      ['step "a" compensation: tool "wire.money" is not available to this tenant'],
    );
    // A tool narrowed away by the tenant's allow-list is as unknown as a made-up one.
    const narrowed = new Map([...tools].filter(([n]) => n !== 'email.send'));
    expect(
      validateDraft(
        plan(step('a', { tool: 'email.send', args: { to: 'x@y.test', subject: 'hi' } })),
        narrowed,
      ),
    ).toEqual(['step "a": tool "email.send" is not available to this tenant']);
  });

  it('refuses arguments that do not match the tool schema, naming the path', () => {
    const problems = (args: Record<string, unknown>) =>
      validateDraft(plan(step('m', { tool: 'email.send', args })), tools);
    expect(problems({ to: 'x@y.test' })[0]).toMatch(
      /^step "m": arguments for email.send are invalid: \/subject /,
    );
    expect(problems({ to: 'x@y.test', subject: 'hi', bcc: 'spy@evil.test' })[0]).toMatch(
      /arguments for email.send are invalid: \/bcc/,
    );
    expect(problems({ to: 'x@y.test', subject: 'hi', count: '3' })[0]).toMatch(/\/count/);
    expect(problems({ to: 'x@y.test', subject: '' })).toHaveLength(1);
    expect(
      validateDraft(plan(step('a', { compensation: { tool: 'noop', args: { note: 5 } } })), tools)[0],
    ).toMatch(/^step "a" compensation: arguments for noop are invalid: \/note/);
  });

  it('refuses dependencies on unknown steps and on the step itself', () => {
    expect(validateDraft(plan(step('a', { dependsOn: ['ghost'] })), tools)).toEqual([
      'step "a" depends on unknown step "ghost"',
    ]);
    expect(validateDraft(plan(step('a', { dependsOn: ['a'] })), tools)).toEqual([
      'step "a" depends on itself',
    ]);
  });

  it('refuses cycles, short and long', () => {
    expect(
      validateDraft(plan(step('a', { dependsOn: ['b'] }), step('b', { dependsOn: ['a'] })), tools),
    ).toEqual(['the step dependencies form a cycle']);
    expect(
      validateDraft(
        plan(
          step('a'),
          step('b', { dependsOn: ['a', 'd'] }),
          step('c', { dependsOn: ['b'] }),
          step('d', { dependsOn: ['c'] }),
        ),
        tools,
      ),
    ).toEqual(['the step dependencies form a cycle']);
  });

  it('reports several problems at once', () => {
    expect(
      validateDraft(
        plan(step('a', { tool: 'nope' }), step('b', { dependsOn: ['zz'], args: { x: 1 } })),
        tools,
      ),
    ).toHaveLength(3);
  });
});

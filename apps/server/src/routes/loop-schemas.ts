import { Type } from '@sinclair/typebox';

const Nullable = <T extends ReturnType<typeof Type.String>>(s: T) => Type.Union([s, Type.Null()]);
const Json = Type.Record(Type.String(), Type.Unknown());

export const TaskStatus = Type.Union([
  Type.Literal('needs_action'),
  Type.Literal('planning'),
  Type.Literal('pending_approval'),
  Type.Literal('approved'),
  Type.Literal('executing'),
  Type.Literal('done'),
  Type.Literal('rejected'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);

export const TaskSummarySchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  title: Type.String(),
  status: TaskStatus,
  source: Type.String(),
  planner: Nullable(Type.String()),
  needsActionReason: Nullable(Type.String()),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
  finishedAt: Nullable(Type.String({ format: 'date-time' })),
});

export const StepSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  key: Type.String(),
  kind: Type.String(),
  tool: Type.String(),
  args: Json,
  dependsOn: Type.Array(Type.String()),
  risk: Type.String(),
  needsApproval: Type.Boolean(),
  approvalReasons: Type.Array(Type.String()),
  status: Type.String(),
  attempts: Type.Integer(),
  maxAttempts: Type.Integer(),
  result: Type.Union([Json, Type.Null()]),
  error: Type.Union([Json, Type.Null()]),
  startedAt: Nullable(Type.String()),
  finishedAt: Nullable(Type.String()),
});

export const ApprovalSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  taskId: Type.String({ format: 'uuid' }),
  stepId: Nullable(Type.String()),
  scope: Type.String({ description: 'step, or plan for a plan-level approval' }),
  status: Type.String(),
  action: Type.Record(Type.String(), Type.Unknown(), {
    description: 'the exact tool and arguments (or the steps of a plan) it authorises',
  }),
  actionHash: Type.String(),
  preview: Type.Array(Type.Unknown(), { description: 'every side effect, as a dry run' }),
  reasons: Type.Array(Type.String()),
  quorum: Type.Integer(),
  approvals: Type.Integer(),
  decisions: Type.Array(
    Type.Object({
      actorLabel: Nullable(Type.String()),
      decision: Type.String(),
      comment: Nullable(Type.String()),
      at: Type.String(),
    }),
  ),
  expiresAt: Type.String(),
  decidedAt: Nullable(Type.String()),
  createdAt: Type.String(),
});

export const TaskDetailSchema = Type.Composite([
  TaskSummarySchema,
  Type.Object({
    planSummary: Nullable(Type.String()),
    error: Type.Union([Json, Type.Null()]),
    event: Type.Union([
      Type.Object({
        id: Type.String(),
        source: Type.String(),
        type: Type.String(),
        externalId: Nullable(Type.String()),
        from: Nullable(Type.String()),
        subject: Nullable(Type.String()),
        body: Nullable(Type.String()),
        data: Json,
        receivedAt: Type.String(),
      }),
      Type.Null(),
    ]),
    steps: Type.Array(StepSchema),
    approvals: Type.Array(ApprovalSchema),
  }),
]);

export const EventBody = Type.Object(
  {
    source: Type.String({
      pattern: '^[a-z][a-z0-9_.-]{0,49}$',
      description: 'where it came from: email, folder, webhook, api, ...',
    }),
    type: Type.String({ minLength: 1, maxLength: 100 }),
    externalId: Type.Optional(
      Type.String({ minLength: 1, maxLength: 500, description: 'deduplication key within the source' }),
    ),
    from: Type.Optional(Type.String({ maxLength: 500 })),
    subject: Type.Optional(Type.String({ maxLength: 1000 })),
    body: Type.Optional(Type.String({ maxLength: 500_000 })),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);

import { createReadStream } from 'node:fs';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Resources } from '@steward/core/resources';
import {
  getExport,
  listExports,
  openExportDownload,
  requestExport,
} from '@steward/core/privacy/export-service';
import type { FastifyInstance } from 'fastify';
import { actorOf, principalOf } from '../http/request-actor.ts';
import { errors, IdParams, Page, PageQuery } from '../http/schemas.ts';

const Nullable = Type.Union([Type.String(), Type.Null()]);

const ExportSchema = Type.Object({
  id: Type.String({ format: 'uuid' }),
  scope: Type.Union([Type.Literal('tenant'), Type.Literal('user')]),
  subjectUserId: Nullable,
  status: Type.Union([
    Type.Literal('queued'),
    Type.Literal('running'),
    Type.Literal('done'),
    Type.Literal('failed'),
  ]),
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  stage: Nullable,
  fileName: Nullable,
  sizeBytes: Type.Union([Type.Integer(), Type.Null()]),
  sha256: Nullable,
  error: Nullable,
  createdAt: Type.String(),
  finishedAt: Nullable,
});

/** GDPR export: an archive (tar.gz of JSON files and the tenant's files) built by a job. */
export function exportRoutes(res: Resources) {
  return async (instance: FastifyInstance) => {
    const app = instance.withTypeProvider<TypeBoxTypeProvider>();
    app.post(
      '/exports',
      {
        config: { access: 'privacy:export' },
        schema: {
          tags: ['privacy'],
          summary:
            'Export everything about the tenant, or about one member (a durable job; poll GET /exports/:id)',
          body: Type.Object(
            {
              scope: Type.Union([Type.Literal('tenant'), Type.Literal('user')]),
              userId: Type.Optional(
                Type.String({ format: 'uuid', description: 'the member, for scope user' }),
              ),
            },
            { additionalProperties: false },
          ),
          response: { 202: ExportSchema, ...errors(400, 401, 403, 404, 409) },
        },
      },
      async (request, reply) =>
        reply
          .code(202)
          .send(await requestExport(res, principalOf(request).tenantId, actorOf(request), request.body)),
    );
    app.get(
      '/exports',
      {
        config: { access: 'privacy:export' },
        schema: {
          tags: ['privacy'],
          summary: 'Exports, newest first',
          querystring: PageQuery,
          response: { 200: Page(ExportSchema), ...errors(400, 401, 403) },
        },
      },
      async (request) => listExports(res, principalOf(request).tenantId, request.query),
    );
    app.get(
      '/exports/:id',
      {
        config: { access: 'privacy:export' },
        schema: {
          tags: ['privacy'],
          summary: 'An export: status and progress (0-100)',
          params: IdParams,
          response: { 200: ExportSchema, ...errors(400, 401, 403, 404) },
        },
      },
      async (request) => getExport(res, principalOf(request).tenantId, request.params.id),
    );
    app.get(
      '/exports/:id/download',
      {
        config: { access: 'privacy:export' },
        schema: {
          tags: ['privacy'],
          summary: 'Download a finished export (application/gzip; audited)',
          params: IdParams,
          response: {
            200: Type.String({ format: 'binary', description: 'the tar.gz archive' }),
            ...errors(400, 401, 403, 404, 409),
          },
        },
      },
      async (request, reply) => {
        const d = await openExportDownload(
          res,
          principalOf(request).tenantId,
          actorOf(request),
          request.params.id,
        );
        return (
          reply
            .type('application/gzip')
            .header('content-length', d.size)
            .header('content-disposition', `attachment; filename="${d.fileName}"`)
            .header('cache-control', 'no-store')
            // A stream skips serialisation; the schema documents the body for OpenAPI.
            .send(createReadStream(d.file) as unknown as string)
        );
      },
    );
  };
}

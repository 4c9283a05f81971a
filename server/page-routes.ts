import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import { getText } from '../backends/storage/index.ts';
import { jobFolder } from '../models/bucket-contract.ts';
import { CatalogAnswer } from '../models/page-api.ts';
import { ErrorAnswer, Identity } from '../models/service-api.ts';
import { parseFilter } from '../wrapper/record-query.ts';
import { HttpError, type Service } from './service.ts';
import type { Principal } from './tokens.ts';

const MAX_ASSETS = 1000;

const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });

export const PAGE_ROUTES = {
  catalog: createRoute({
    method: 'get',
    path: '/api/catalog',
    summary: 'Data assets of the catalog a filter matches, to pick datasets from (the filter language of caas catalog query)',
    request: {
      query: z.object({
        filter: z.string().optional().describe('a MongoDB filter as JSON (default: every asset)'),
        limit: z.coerce.number().int().min(1).max(MAX_ASSETS).default(200),
      }),
    },
    responses: {
      200: json(CatalogAnswer, 'the matching assets, in catalog order'),
      400: json(ErrorAnswer, 'the filter is not JSON or uses an operator caas refuses'),
      401: json(ErrorAnswer, 'missing or unknown bearer token'),
    },
  }),
  certificate: createRoute({
    method: 'get',
    path: '/api/jobs/{identity}/certificate',
    summary: "The current attempt's logs/certificate.txt (NeuroCAAS's running account of the job)",
    request: { params: z.object({ identity: Identity }) },
    responses: {
      200: { content: { 'text/plain': { schema: z.string() } }, description: 'the certificate' },
      400: json(ErrorAnswer, 'not an identity'),
      401: json(ErrorAnswer, 'missing or unknown bearer token'),
      404: json(ErrorAnswer, 'no such job in your group, or no certificate yet'),
    },
  }),
};

type Env = { Variables: { principal: Principal } };

/**
 * The two routes the page needs that a script does not: the catalog is shared by every group (it
 * describes data, not jobs), the certificate is scoped like the job's other files.
 */
export function mountPageRoutes(app: OpenAPIHono<Env>, service: Service): void {
  app.openapi(PAGE_ROUTES.catalog, async (c) => {
    const { filter, limit } = c.req.valid('query');
    const assets: Record<string, unknown>[] = [];
    // One more than asked tells whether there are more.
    for await (const asset of service.db.findAssets(parseFilter(filter ?? '{}'), { limit: limit + 1 })) assets.push(asset);
    return c.json({ assets: assets.slice(0, limit) as CatalogAnswer['assets'], more: assets.length > limit }, 200);
  });
  app.openapi(PAGE_ROUTES.certificate, async (c) => {
    const { identity } = c.req.valid('param');
    const { record } = await service.visibleJob(identity, c.get('principal'));
    const job = record?.job;
    const text = job ? await getText(service.store, job.bucket, jobFolder(job.bucket, job.group, job.timestamp).certificate) : undefined;
    if (text === undefined) throw new HttpError(404, `job ${identity} has no certificate yet`);
    return c.text(text, 200);
  });
}

import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { CaasError } from '../models/caas-error.ts';
import { JobInput } from '../models/job-input.ts';
import {
  AnalysesAnswer,
  AnalysisDetail,
  CancelAnswer,
  DispatchAnswer,
  DispatchBody,
  ErrorAnswer,
  Health,
  Identity,
  JobListAnswer,
  JobStatusAnswer,
  JobsAnswer,
  RecordsAnswer,
  WhyAnswer,
} from '../models/service-api.ts';
import { project } from '../wrapper/projection.ts';
import { buildFilter, parseFields, parseFilter, parseSort } from '../wrapper/record-query.ts';
import { preimageDiff } from '../wrapper/why.ts';
import { dispatchJobs } from './dispatch.ts';
import { jobEvents } from './events.ts';
import { mountPageRoutes, PAGE_ROUTES } from './page-routes.ts';
import type { QueueWorker } from './queue-worker.ts';
import { jsonContentProblem, loopbackHostProblem, originProblem, STATE_CHANGING } from './request-guards.ts';
import { HttpError, type Service } from './service.ts';
import { LOOPBACK_ADMIN, type Principal, type TokenRing } from './tokens.ts';
import { mountWebPage } from './web.ts';

export interface AppOptions {
  service: Service;
  worker?: QueueWorker;
  tokens: TokenRing;
  maxBodyBytes: number;
  /** How often the events stream looks at the job. */
  eventsIntervalMs: number;
  /** One JSON object per request, written as a line by the caller. */
  log: (event: Record<string, unknown>) => void;
  /** True while the server shuts down: new requests are answered 503. */
  draining: () => boolean;
  /** The port the server listens on: with no tokens, requests must be addressed to it on a loopback name. */
  port: () => number;
}

type Env = { Variables: { principal: Principal } };

const json = <T extends z.ZodType>(schema: T, description: string) => ({ content: { 'application/json': { schema } }, description });
const errors = {
  400: json(ErrorAnswer, 'invalid input: what is wrong, with field paths'),
  401: json(ErrorAnswer, 'missing or unknown bearer token'),
  404: json(ErrorAnswer, 'no such job, record or analysis in your group'),
  403: json(ErrorAnswer, "the request's Origin is another site: only the service's own page may change anything from a browser"),
  415: json(ErrorAnswer, 'the body is not sent as Content-Type: application/json'),
};
const IdentityParams = z.object({ identity: Identity });
const DEFAULT_RECORDS = 100;
const MAX_RECORDS = 10_000;
const MAX_JOBS_PER_REQUEST = 10_000;

const routes = {
  analyses: createRoute({
    method: 'get',
    path: '/api/analyses',
    summary: 'The analyses this service runs, with their code version',
    responses: { 200: json(AnalysesAnswer, 'the analyses'), 401: errors[401] },
  }),
  analysis: createRoute({
    method: 'get',
    path: '/api/analyses/{name}',
    summary: 'An analysis: parameter and output JSON Schemas, blueprint summary',
    request: { params: z.object({ name: z.string() }) },
    responses: { 200: json(AnalysisDetail, 'the analysis'), 401: errors[401], 404: errors[404] },
  }),
  submit: createRoute({
    method: 'post',
    path: '/api/jobs',
    summary: 'Plan jobs (default) or queue them (?execute=true)',
    description:
      'One job input or an array, as Content-Type: application/json. Every job is answered: identity, action, reason, issues (INVALID), the record (SKIP). 202 when a job is in the queue, 200 when everything was answered already or for a dry run, 400 invalid input (the rest of an array is still handled), 403 from another site, 404 unknown analysis, 413 body too large, 415 not sent as JSON, 429 the group has too many jobs queued.',
    request: {
      query: z.object({ execute: z.enum(['true', 'false']).optional() }),
      body: { content: { 'application/json': { schema: z.union([JobInput, z.array(JobInput)]) } }, required: true },
    },
    responses: {
      200: json(JobsAnswer, 'the plan; nothing queued'),
      202: json(JobsAnswer, 'queued; each queued job has a Location of /api/jobs/{identity} in its answer'),
      400: json(JobsAnswer, 'some job is invalid (its issues say where)'),
      401: errors[401],
      404: json(JobsAnswer, 'the analysis does not exist'),
      403: errors[403],
      413: json(ErrorAnswer, 'the body is larger than the service accepts'),
      415: errors[415],
      429: json(JobsAnswer, "the group's queue is full"),
    },
  }),
  list: createRoute({
    method: 'get',
    path: '/api/jobs',
    summary: "The queue's jobs, newest first (your group's)",
    request: { query: z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) }) },
    responses: { 200: json(JobListAnswer, 'jobs'), 401: errors[401] },
  }),
  dispatch: createRoute({
    method: 'post',
    path: '/api/dispatch',
    summary: 'Dispatch: a catalog query, asset ids or a prefix, into job inputs; planned, or queued with execute',
    request: { body: { content: { 'application/json': { schema: DispatchBody } }, required: true } },
    responses: {
      200: json(DispatchAnswer, 'the jobs and their plan'),
      202: json(DispatchAnswer, 'queued'),
      400: json(ErrorAnswer, 'invalid request'),
      401: errors[401],
      404: errors[404],
      403: errors[403],
      413: json(ErrorAnswer, 'body too large'),
      415: errors[415],
      429: json(DispatchAnswer, "the group's queue is full"),
    },
  }),
  status: createRoute({
    method: 'get',
    path: '/api/jobs/{identity}',
    summary: 'A job: state, attempts, job folder, status file, record when done',
    request: { params: IdentityParams },
    responses: { 200: json(JobStatusAnswer, 'the job'), 400: errors[400], 401: errors[401], 404: errors[404] },
  }),
  events: createRoute({
    method: 'get',
    path: '/api/jobs/{identity}/events',
    summary: 'Server-Sent Events: status changes and new log lines until the job is over (resumable with Last-Event-ID)',
    request: { params: IdentityParams },
    responses: {
      200: { content: { 'text/event-stream': { schema: z.string() } }, description: 'events: status, log, end' },
      400: errors[400],
      401: errors[401],
      404: errors[404],
    },
  }),
  output: createRoute({
    method: 'get',
    path: '/api/jobs/{identity}/outputs/{path}',
    summary: "Download an output under the job's process_results/ (path may hold /)",
    request: { params: IdentityParams.extend({ path: z.string() }) },
    responses: {
      200: { content: { 'application/octet-stream': { schema: z.string() } }, description: 'the file, streamed from the store' },
      400: errors[400],
      401: errors[401],
      404: errors[404],
    },
  }),
  cancel: createRoute({
    method: 'delete',
    path: '/api/jobs/{identity}',
    summary: 'Cancel a queued job, or the running attempt of one a service runs (recorded)',
    request: { params: IdentityParams },
    responses: {
      200: json(CancelAnswer, 'cancelled'),
      400: errors[400],
      401: errors[401],
      403: errors[403],
      404: errors[404],
      409: json(ErrorAnswer, 'nothing to cancel: done already, or run by a runner no service controls'),
    },
  }),
  records: createRoute({
    method: 'get',
    path: '/api/records',
    summary: 'The provenance query: the filter language of caas query',
    request: {
      query: z.object({
        filter: z.string().optional().describe('a MongoDB filter as JSON'),
        fields: z.string().optional().describe('dotted paths, comma-separated'),
        sort: z.string().optional().describe('field, -field, field:1 or field:-1, comma-separated'),
        limit: z.coerce.number().int().min(0).max(MAX_RECORDS).optional(),
        analysis: z.string().optional(),
        status: z.string().optional(),
        since: z.string().optional(),
        input: z.string().optional(),
        commit: z.string().optional(),
      }),
    },
    responses: { 200: json(RecordsAnswer, 'records'), 400: errors[400], 401: errors[401] },
  }),
  why: createRoute({
    method: 'get',
    path: '/api/records/{identity}/why',
    summary: 'Why two records differ (?against=), or the nearest records of the same analysis and inputs',
    request: { params: IdentityParams, query: z.object({ against: Identity.optional() }) },
    responses: { 200: json(WhyAnswer, 'the differences of the pre-images'), 400: errors[400], 401: errors[401], 404: errors[404] },
  }),
  healthz: createRoute({
    method: 'get',
    path: '/healthz',
    summary: 'The process answers',
    responses: { 200: json(Health, 'alive') },
  }),
  readyz: createRoute({
    method: 'get',
    path: '/readyz',
    summary: 'The metadata DB and the store answer',
    responses: { 200: json(Health, 'ready'), 503: json(Health, 'not ready: checks say what failed') },
  }),
};

/** Every route of the API by method and path, as the OpenAPI document lists them. */
export const API_ROUTES = [...Object.values(routes), ...Object.values(PAGE_ROUTES)].map((r) => `${r.method.toUpperCase()} ${r.path}`);

function errorBody(c: Context, error: unknown) {
  if (error instanceof HttpError) return c.json({ error: error.message, ...(error.issues ? { issues: error.issues } : {}) }, error.status);
  if (error instanceof CaasError) return c.json({ error: error.message }, 400);
  throw error;
}

/**
 * The service's HTTP app: the routes above, each validated by its zod models (a bad parameter is a
 * 400 naming its path), behind the request log, the drain switch, the body cap and the tokens.
 */
export function buildApp(options: AppOptions): OpenAPIHono<Env> {
  const { service } = options;
  const app = new OpenAPIHono<Env>({
    defaultHook: (result, c) => {
      if (result.success) return;
      const issues = result.error.issues.map((i) => ({
        path: i.path.map((p) => (typeof p === 'number' ? p : String(p))),
        message: i.message,
      }));
      return c.json({ error: issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; '), issues }, 400);
    },
  });
  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });

  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    options.log({
      time: new Date().toISOString(),
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      ms: Math.round((performance.now() - started) * 10) / 10,
      who: c.get('principal')?.name ?? null,
    });
    // Every answer is what its content type says: a browser never guesses HTML from an error or a record.
    c.res.headers.set('x-content-type-options', 'nosniff');
  });
  app.use('*', async (c, next) => {
    if (!options.tokens.empty) return next();
    const problem = loopbackHostProblem(c.req.header('host'), options.port());
    // 421 Misdirected Request: the request was meant for another name than this server answers to.
    return problem ? c.json({ error: problem }, 421) : next();
  });
  app.use('*', async (c, next) => {
    if (!STATE_CHANGING.has(c.req.method)) return next();
    const origin = originProblem(c.req.header('origin'), c.req.header('host'), c.req.header('x-forwarded-host'));
    if (origin) return c.json({ error: origin }, 403);
    // DELETE carries no body; the others must say theirs is JSON.
    const content = c.req.method === 'DELETE' ? undefined : jsonContentProblem(c.req.header('content-type'));
    return content ? c.json({ error: content }, 415) : next();
  });
  app.use('*', async (c, next) => {
    if (options.draining()) return c.json({ error: 'the service is shutting down: try again in a moment (or at another server)' }, 503);
    await next();
  });
  app.use(
    '/api/*',
    bodyLimit({
      maxSize: options.maxBodyBytes,
      onError: (c) => c.json({ error: `request body larger than ${options.maxBodyBytes} bytes: send fewer jobs per request` }, 413),
    }),
  );
  app.use('/api/*', async (c, next) => {
    if (c.req.path === '/api/openapi.json') return next();
    if (options.tokens.empty) {
      c.set('principal', LOOPBACK_ADMIN);
      return next();
    }
    const principal = options.tokens.authenticate(c.req.header('authorization'));
    if (!principal) {
      c.header('WWW-Authenticate', 'Bearer realm="caas"');
      return c.json({ error: 'missing or unknown bearer token: send Authorization: Bearer <token> (caas serve token add makes one)' }, 401);
    }
    c.set('principal', principal);
    return next();
  });
  app.onError((error, c) => {
    if (error instanceof HttpError || error instanceof CaasError) return errorBody(c, error);
    // hono's own refusals (a body that is not JSON, from a route's validator) are the client's: their status, in the API's shape.
    if (error instanceof HTTPException && error.status < 500) {
      return c.json({ error: `body: ${error.message}; expected a JSON object (Content-Type: application/json)` }, error.status);
    }
    options.log({ error: (error as Error).stack ?? String(error), path: c.req.path });
    return c.json({ error: `internal error: ${(error as Error).message}` }, 500);
  });

  app.openapi(routes.analyses, async (c) => c.json({ analyses: await service.analyses() }, 200));
  app.openapi(routes.analysis, async (c) => c.json(await service.analysis(c.req.valid('param').name), 200));

  app.openAPIRegistry.registerPath(routes.submit);
  // The body is read here, not by the route's validator: each job of an array is answered on its
  // own (an invalid one does not refuse the others), with the issues of the same models.
  app.post('/api/jobs', async (c) => {
    const execute = c.req.query('execute') === 'true';
    let body: unknown;
    try {
      body = await c.req.json();
    } catch (error) {
      return c.json({ error: `body: not JSON (${(error as Error).message}); expected a job input or an array of them` }, 400);
    }
    const values = Array.isArray(body) ? body.map((value, i) => ({ where: `body[${i}]`, value })) : [{ where: 'body', value: body }];
    if (values.length === 0) return c.json({ error: 'body: an empty array: send at least one job input' }, 400);
    if (values.length > MAX_JOBS_PER_REQUEST) return c.json({ error: `body: at most ${MAX_JOBS_PER_REQUEST} jobs per request` }, 413);
    const answer = await service.submit(values, c.get('principal'), execute);
    if (answer.body.jobs.some((j) => j.queued)) options.worker?.poke();
    const only = answer.body.jobs.length === 1 ? answer.body.jobs[0] : undefined;
    if (only?.location) c.header('Location', only.location);
    return c.json(answer.body, answer.status);
  });
  app.openapi(routes.list, async (c) => {
    const principal = c.get('principal');
    const jobs = await service.db.queue.listQueued({
      limit: c.req.valid('query').limit,
      ...(principal.group === null ? {} : { group: principal.group }),
    });
    return c.json({ jobs }, 200);
  });
  app.openapi(routes.dispatch, async (c) => {
    const answer = await dispatchJobs(service, c.req.valid('json'), c.get('principal'));
    if (answer.body.jobs.some((j) => j.queued)) options.worker?.poke();
    return c.json(answer.body, answer.status as 200);
  });
  app.openapi(routes.status, async (c) => c.json(await service.jobStatus(c.req.valid('param').identity, c.get('principal')), 200));
  app.openapi(routes.events, async (c) => {
    const { identity } = c.req.valid('param');
    const principal = c.get('principal');
    await service.visibleJob(identity, principal);
    const resumeFrom = c.req.header('last-event-id');
    return streamSSE(
      c,
      (stream) => jobEvents(service, identity, principal, stream, { resumeFrom, intervalMs: options.eventsIntervalMs }),
      // Once the stream has begun, onError above cannot answer: the failure goes to the JSON log, and
      // the client gets an error event it can resume after.
      async (error, stream) => {
        options.log({ time: new Date().toISOString(), error: error.stack ?? String(error), path: c.req.path });
        await stream.writeSSE({ event: 'error', data: 'internal error: the event stream stopped; reconnect with Last-Event-ID to resume' });
      },
    ) as never;
  });
  // Registered for the document; served below, where the path may hold "/".
  app.openAPIRegistry.registerPath(routes.output);
  app.get('/api/jobs/:identity/outputs/:path{.+}', async (c) => {
    const identity = Identity.safeParse(c.req.param('identity'));
    if (!identity.success)
      return c.json(
        {
          error: `identity: ${identity.error.issues[0]?.message}`,
          issues: [{ path: ['identity'], message: 'an identity: 64 lowercase hex digits' }],
        },
        400,
      );
    const raw = c.req.path.slice(`/api/jobs/${identity.data}/outputs/`.length);
    let relative: string;
    try {
      relative = decodeURIComponent(raw);
    } catch {
      return c.json({ error: `output path "${raw}": not valid percent-encoding` }, 400);
    }
    const file = await service.output(identity.data, relative, c.get('principal'));
    return new Response(file.body, {
      headers: {
        'content-type': contentTypeOf(file.name),
        'content-length': String(file.size),
        'content-disposition': `attachment; filename="${file.name.replace(/[^A-Za-z0-9._-]/g, '_')}"`,
        'x-content-type-options': 'nosniff',
        'content-security-policy': "sandbox; default-src 'none'",
      },
    });
  });
  app.openapi(routes.cancel, async (c) => {
    const { identity } = c.req.valid('param');
    const principal = c.get('principal');
    const { record } = await service.visibleJob(identity, principal);
    const reason = `cancelled through the API by ${principal.name}${principal.group ? ` (group ${principal.group})` : ''} at ${new Date().toISOString()}`;
    const entry = await service.db.queue.cancel(identity, reason);
    if (entry?.state === 'cancelled') return c.json({ identity, cancelled: 'queued' as const, reason }, 200);
    if (entry?.state === 'taken') {
      options.worker?.cancel(identity, reason);
      return c.json({ identity, cancelled: 'running' as const, reason }, 200);
    }
    if (record?.status === 'running' || record?.status === 'claimed') {
      const owner = record.lease?.owner;
      throw new HttpError(
        409,
        `job ${identity} is run by a runner no service controls (${owner?.host} pid ${owner?.pid}): stop that runner (Ctrl-C records it as failed)`,
      );
    }
    throw new HttpError(409, `job ${identity} is ${record?.status ?? 'over'}: nothing to cancel`);
  });
  app.openapi(routes.records, async (c) => {
    const q = c.req.valid('query');
    const filter = buildFilter(parseFilter(q.filter ?? '{}'), {
      analysis: q.analysis,
      input: q.input,
      commit: q.commit,
      status: q.status,
      since: q.since,
    });
    const fields = q.fields ? parseFields(q.fields) : undefined;
    const records = await service.records(filter, c.get('principal'), {
      sort: q.sort ? parseSort(q.sort) : { created: -1 },
      limit: q.limit ?? DEFAULT_RECORDS,
    });
    return c.json({ records: records.map((r) => (fields ? project(r, fields) : r) as Record<string, unknown>) }, 200);
  });
  app.openapi(routes.why, async (c) => {
    const { identity } = c.req.valid('param');
    const { against } = c.req.valid('query');
    const principal = c.get('principal');
    const record = await service.visibleRecord(identity, principal);
    const others = against
      ? [await service.visibleRecord(against, principal)]
      : await service.records(
          {
            'analysis.name': record.analysis.name,
            'inputs.asset_id': { $in: [...new Set(record.preimage.inputs.map((i) => i.asset_id))] },
            _id: { $ne: identity },
          },
          principal,
          { limit: MAX_RECORDS },
        );
    const compared = others
      .map((other) => ({
        against: other._id,
        status: other.status,
        created: other.created,
        differences: preimageDiff(other.preimage, record.preimage).map((d) => ({ path: d.path, this: d.job, against: d.recorded })),
      }))
      .sort((a, b) => a.differences.length - b.differences.length || (a.created < b.created ? 1 : -1));
    return c.json({ identity, compared: against ? compared : compared.slice(0, 3), candidates: against ? 1 : compared.length }, 200);
  });
  app.openapi(routes.healthz, (c) => c.json({ ok: true, checks: {} }, 200));
  app.openapi(routes.readyz, async (c) => {
    const checks = await readiness(service);
    const ok = Object.values(checks).every((v) => v === 'ok');
    return c.json({ ok, checks }, ok ? 200 : 503);
  });
  mountPageRoutes(app, service);
  mountWebPage(app);
  app.doc31('/api/openapi.json', {
    openapi: '3.1.0',
    info: {
      title: 'caas serve',
      version: '1',
      description:
        'Cloud analysis as a service: jobs run exactly once with provenance. See docs/serve.md. A server with no tokens answers 421 to a request whose Host is not a loopback name with its port.',
    },
    security: [{ bearer: [] }],
  });
  return app;
}

/** Whether the DB and the store answer, each within a few seconds. */
async function readiness(service: Service): Promise<Record<string, string>> {
  const within = async (what: () => Promise<unknown>): Promise<string> => {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([what(), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('no answer within 5 s')), 5000)))]);
      return 'ok';
    } catch (error) {
      return (error as Error).message;
    } finally {
      clearTimeout(timer);
    }
  };
  const [db, store] = await Promise.all([
    within(() => service.db.lookup(['0'.repeat(64)])),
    within(() => service.store.bucketExists('caas-readiness-check')),
  ]);
  return { db, store };
}

const CONTENT_TYPES: Record<string, string> = {
  json: 'application/json',
  txt: 'text/plain; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  svg: 'image/svg+xml',
  png: 'image/png',
  html: 'text/plain; charset=utf-8',
};

/** By extension; anything unknown is a download. HTML is served as text, so an output cannot run script in the page's origin. */
function contentTypeOf(name: string): string {
  return CONTENT_TYPES[name.split('.').pop()?.toLowerCase() ?? ''] ?? 'application/octet-stream';
}

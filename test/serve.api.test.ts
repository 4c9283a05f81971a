import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_ROUTES } from '../server/app.ts';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing, tokenHash } from '../server/tokens.ts';
import { call, type Json, mockWaitJob, serviceSettings, until } from './support/service.ts';
import { AnalysisRepo, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

const METHODS = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace']);
const PATH_ITEM_FIELDS = new Set([...METHODS, 'summary', 'description', 'servers', 'parameters', '$ref']);

/**
 * What is wrong with a document as OpenAPI 3.1, by the rules of the specification that a generator
 * can get wrong (no validator package is installed; openapi3-ts only has types and builders): the
 * required fields, operations with responses that each have a description and media types with a
 * schema, path templates matched by required path parameters, unique operationIds, security naming
 * declared schemes, and schemas in 3.1's JSON Schema (no 3.0 `nullable`, numeric exclusive bounds).
 */
function openApi31Problems(doc: Json): string[] {
  const problems: string[] = [];
  const fail = (where: string, what: string) => problems.push(`${where}: ${what}`);
  if (typeof doc?.openapi !== 'string' || !/^3\.1\.\d+$/.test(doc.openapi)) fail('openapi', 'expected "3.1.x"');
  if (typeof doc?.info?.title !== 'string' || typeof doc?.info?.version !== 'string')
    fail('info', 'title and version are required strings');
  if (!doc?.paths || typeof doc.paths !== 'object') fail('paths', 'expected an object');
  const schemes = new Set(Object.keys(doc?.components?.securitySchemes ?? {}));
  for (const [name, scheme] of Object.entries<Json>(doc?.components?.securitySchemes ?? {})) {
    if (!['apiKey', 'http', 'mutualTLS', 'oauth2', 'openIdConnect'].includes(scheme.type)) fail(`securitySchemes.${name}`, 'unknown type');
    if (scheme.type === 'http' && typeof scheme.scheme !== 'string') fail(`securitySchemes.${name}`, 'http needs scheme');
  }
  const checkSecurity = (where: string, security: Json) => {
    for (const requirement of security ?? [])
      for (const key of Object.keys(requirement)) if (!schemes.has(key)) fail(where, `security names undeclared scheme ${key}`);
  };
  checkSecurity('security', doc?.security);
  const checkSchema = (where: string, schema: Json): void => {
    if (typeof schema === 'boolean') return;
    if (!schema || typeof schema !== 'object' || Array.isArray(schema)) return void fail(where, 'a schema is an object or a boolean');
    if ('nullable' in schema) fail(where, '"nullable" is OpenAPI 3.0; 3.1 uses type [..., "null"]');
    for (const bound of ['exclusiveMinimum', 'exclusiveMaximum'])
      if (bound in schema && typeof schema[bound] !== 'number') fail(where, `${bound} must be a number in 3.1`);
    for (const key of ['properties', 'patternProperties', '$defs', 'definitions'])
      for (const [name, sub] of Object.entries<Json>(schema[key] ?? {})) checkSchema(`${where}.${key}.${name}`, sub);
    for (const key of ['items', 'additionalProperties', 'not', 'contains', 'propertyNames', 'if', 'then', 'else'])
      if (schema[key] !== undefined) checkSchema(`${where}.${key}`, schema[key]);
    for (const key of ['allOf', 'anyOf', 'oneOf', 'prefixItems'])
      for (const [i, sub] of ((schema[key] ?? []) as Json[]).entries()) checkSchema(`${where}.${key}[${i}]`, sub);
  };
  const checkContent = (where: string, content: Json) => {
    for (const [media, entry] of Object.entries<Json>(content ?? {})) {
      if (!/^[\w.+-]+\/[\w.+-]+$/.test(media)) fail(where, `media type ${media}`);
      if (entry?.schema === undefined) fail(`${where}.${media}`, 'no schema');
      else checkSchema(`${where}.${media}.schema`, entry.schema);
    }
  };
  const operationIds = new Set<string>();
  for (const [route, item] of Object.entries<Json>(doc?.paths ?? {})) {
    if (!route.startsWith('/')) fail(route, 'a path starts with /');
    for (const key of Object.keys(item)) if (!PATH_ITEM_FIELDS.has(key)) fail(route, `unknown path item field ${key}`);
    for (const [method, operation] of Object.entries<Json>(item).filter(([key]) => METHODS.has(key))) {
      const where = `${method.toUpperCase()} ${route}`;
      if (operation.operationId !== undefined) {
        if (operationIds.has(operation.operationId)) fail(where, `operationId ${operation.operationId} is not unique`);
        operationIds.add(operation.operationId);
      }
      const parameters: Json[] = [...(item.parameters ?? []), ...(operation.parameters ?? [])];
      for (const parameter of parameters) {
        if (typeof parameter.name !== 'string' || !['query', 'header', 'path', 'cookie'].includes(parameter.in))
          fail(where, 'a parameter needs name and in');
        if (parameter.in === 'path' && parameter.required !== true) fail(where, `path parameter ${parameter.name} must be required`);
        if (parameter.schema !== undefined) checkSchema(`${where} parameter ${parameter.name}`, parameter.schema);
      }
      for (const [, name] of route.matchAll(/\{([^}]+)\}/g))
        if (!parameters.some((p) => p.in === 'path' && p.name === name)) fail(where, `path template {${name}} has no path parameter`);
      if (operation.requestBody !== undefined) {
        if (!operation.requestBody.content) fail(where, 'requestBody needs content');
        checkContent(`${where} requestBody`, operation.requestBody.content);
      }
      const responses = Object.entries<Json>(operation.responses ?? {});
      if (responses.length === 0) fail(where, 'no responses');
      for (const [code, response] of responses) {
        if (!/^([1-5](\d\d|XX)|default)$/.test(code)) fail(where, `response code ${code}`);
        if (typeof response.description !== 'string') fail(`${where} ${code}`, 'a response needs a description');
        checkContent(`${where} ${code}`, response.content);
      }
      checkSecurity(where, operation.security);
    }
  }
  for (const [name, schema] of Object.entries<Json>(doc?.components?.schemas ?? {})) checkSchema(`components.schemas.${name}`, schema);
  return problems;
}

/** The service's API against real listening servers on 127.0.0.1, inline compute, real SQLite and files. */
describe('caas serve: the API', () => {
  let base: string;
  let data: string;
  let open: RunningService;
  let guarded: RunningService;
  const tokens = { caas: 'caas_token-of-group-caas', demo: 'caas_token-of-group-demo', admin: 'caas_admin-token' };
  const job = (asset: string, parameters: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) =>
    mockWaitJob(data, asset, parameters, extra);

  beforeAll(async () => {
    base = scratchDir('serve-api');
    const repo = new AnalysisRepo(base);
    process.env.CAAS_ANALYSES = repo.dir;
    data = sessionFile(base);
    open = await startService({ ...serviceSettings(path.join(base, 'open')), tokens: new TokenRing([]) });
    guarded = await startService({
      ...serviceSettings(path.join(base, 'guarded')),
      tokens: new TokenRing([
        { name: 'caas-lab', group: 'caas', sha256: tokenHash(tokens.caas), created: '' },
        { name: 'demo-lab', group: 'demo', sha256: tokenHash(tokens.demo), created: '' },
        { name: 'admin', group: null, sha256: tokenHash(tokens.admin), created: '' },
      ]),
    });
  });
  afterAll(async () => {
    await open?.stop(0);
    await guarded?.stop(0);
    removeDir(base);
  });

  const sse = (text: string): Record<string, string>[] =>
    text
      .trim()
      .split('\n\n')
      .map((block) =>
        Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)])),
      );
  const succeeded = (service: RunningService, identity: string, token?: string) =>
    until(`${identity} to succeed`, async () => {
      const { body } = await call(service.url, 'GET', `/api/jobs/${identity}`, { token });
      return body.state === 'succeeded' && body.queue?.state === 'done' ? body : undefined;
    });

  it('without tokens it listens on loopback only and refuses a public --host', async () => {
    expect(open.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    await expect(
      startService({ ...serviceSettings(path.join(base, 'public')), host: '0.0.0.0', tokens: new TokenRing([]) }),
    ).rejects.toMatchObject({
      exitCode: 2,
      message: expect.stringMatching(/--host 0\.0\.0\.0 .*configure tokens first/),
    });
  });

  it('lists the analyses with their code version, and one with its parameter JSON Schema and blueprint; an unknown one is 404', async () => {
    const list = await call(open.url, 'GET', '/api/analyses');
    expect(list.status).toBe(200);
    // No answer is ever taken for HTML by a browser guessing its type, an error's neither.
    expect(list.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await call(open.url, 'GET', `/api/jobs/${'0'.repeat(64)}`)).headers.get('x-content-type-options')).toBe('nosniff');
    expect(list.body.analyses).toContainEqual(
      expect.objectContaining({
        name: 'mock-wait',
        version: '1.0.0',
        code: expect.objectContaining({ commit: expect.stringMatching(/^[0-9a-f]{40}$/) }),
      }),
    );
    const one = await call(open.url, 'GET', '/api/analyses/mock-wait');
    expect(one.status).toBe(200);
    expect(one.body.parameters.properties.wait).toMatchObject({ type: 'number', minimum: 0, default: 1 });
    expect(one.body.outputs.file).toBe('waited.json');
    expect(one.body.blueprint.groups.map((g: { name: string }) => g.name)).toEqual(['caas', 'demo']);
    expect((await call(open.url, 'GET', '/api/analyses/no-such')).status).toBe(404);
  });

  it('POST /api/jobs is a dry run by default: the plan with identity and Location, nothing queued', async () => {
    const planned = await call(open.url, 'POST', '/api/jobs', { body: job('dry') });
    expect(planned.status).toBe(200);
    const [answer] = planned.body.jobs;
    expect(answer).toMatchObject({ where: 'body', action: 'RUN', queued: false, identity: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(planned.headers.get('location')).toBe(`/api/jobs/${answer.identity}`);
    expect((await call(open.url, 'GET', `/api/jobs/${answer.identity}`)).status).toBe(404);
  });

  it('invalid input is 400 with zod issue paths; in an array the valid jobs are still queued (202); unknown analysis 404; not JSON 400; too large 413', async () => {
    const bad = await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('bad', { wait: 'soon' }) });
    expect(bad.status).toBe(400);
    expect(bad.body.jobs[0]).toMatchObject({
      action: 'INVALID',
      queued: false,
      issues: [{ path: ['parameters', 'wait'], message: expect.any(String) }],
    });

    const mixed = await call(open.url, 'POST', '/api/jobs?execute=true', {
      body: [{ analysis: 'mock-wait', inputs: [] }, job('mixed-ok')],
    });
    expect(mixed.status).toBe(202);
    expect(mixed.body.jobs[0]).toMatchObject({ where: 'body[0]', action: 'INVALID', issues: [{ path: ['inputs'] }] });
    expect(mixed.body.jobs[1]).toMatchObject({ where: 'body[1]', action: 'RUN', queued: true });
    await succeeded(open, mixed.body.jobs[1].identity);

    const unknown = await call(open.url, 'POST', '/api/jobs', { body: { ...job('x'), analysis: 'no-such-analysis' } });
    expect(unknown.status).toBe(404);
    expect(unknown.body.jobs[0].reason).toMatch(/no-such-analysis/);

    const notJson = await call(open.url, 'POST', '/api/jobs', { raw: '{"analysis":' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toMatch(/not JSON/);

    const big = await call(open.url, 'POST', '/api/jobs', { raw: JSON.stringify([job('big', { pad: 'x'.repeat(70 * 1024) })]) });
    expect(big.status).toBe(413);
    expect(big.body.error).toMatch(/larger than 65536 bytes/);
  });

  it('an executed job: 202, then status, live events with its log lines (resumable), its output, and SKIP with the record next time', async () => {
    const accepted = await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('live', { wait: 1 }) });
    expect(accepted.status).toBe(202);
    const { identity } = accepted.body.jobs[0];
    expect(accepted.headers.get('location')).toBe(`/api/jobs/${identity}`);

    const events = await (await fetch(`${open.url}/api/jobs/${identity}/events`)).text();
    const parsed = sse(events);
    expect(parsed.filter((e) => e.event === 'log').map((e) => e.data)).toEqual(['mock-wait: waited 1 s', 'mock-wait: done']);
    expect(parsed.at(-1)).toMatchObject({ event: 'end' });
    expect(JSON.parse(parsed.at(-1)!.data!)).toMatchObject({ state: 'succeeded', end: expect.stringMatching(/^SUCCESS\n/) });
    const firstLog = parsed.find((e) => e.event === 'log')!;
    const resumed = await (await fetch(`${open.url}/api/jobs/${identity}/events`, { headers: { 'last-event-id': firstLog.id! } })).text();
    expect(
      sse(resumed)
        .filter((e) => e.event === 'log')
        .map((e) => e.data),
    ).toEqual(['mock-wait: done']);

    const status = await succeeded(open, identity);
    expect(status).toMatchObject({
      attempts: 1,
      job_folder: expect.stringMatching(/^file:\/\/mock-wait\/caas\/results\/job__mock-wait_/),
      status_file: { status: 'SUCCESS' },
    });
    expect(status.record).toMatchObject({ _id: identity, status: 'succeeded', parameters: { wait: 1 } });

    const output = await fetch(`${open.url}/api/jobs/${identity}/outputs/waited.json`);
    expect(output.status).toBe(200);
    expect(await output.json()).toMatchObject({ waited_s: 1 });
    for (const traversal of [
      '..%2Flogs%2Fstdout.txt',
      'x%2F..%2F..%2Flogs%2Fstdout.txt',
      '%2E%2E%2Flogs%2Fstdout.txt',
      '%2Fetc%2Fpasswd',
      'a%5C..%5Cb',
    ]) {
      expect((await call(open.url, 'GET', `/api/jobs/${identity}/outputs/${traversal}`)).status, traversal).toBe(400);
    }
    expect((await call(open.url, 'GET', `/api/jobs/${identity}/outputs/missing.json`)).status).toBe(404);

    const again = await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('live', { wait: 1 }) });
    expect(again.status).toBe(200);
    expect(again.body.jobs[0]).toMatchObject({ action: 'SKIP', identity, queued: false, record: { _id: identity, status: 'succeeded' } });
  });

  it('GET /api/records answers the filter language of caas query, and its refusals; why compares two records', async () => {
    const first = await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('why', { wait: 0 }) });
    const second = await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('why', { wait: 0.1 }) });
    const [a, b] = [first.body.jobs[0].identity, second.body.jobs[0].identity];
    await succeeded(open, a);
    await succeeded(open, b);

    const found = await call(
      open.url,
      'GET',
      `/api/records?filter=${encodeURIComponent('{"parameters.wait":{"$gt":0.05}}')}&fields=status,parameters.wait&sort=-created`,
    );
    expect(found.status).toBe(200);
    expect(found.body.records).toContainEqual({ _id: b, status: 'succeeded', parameters: { wait: 0.1 } });
    expect(found.body.records.map((r: { _id: string }) => r._id)).not.toContain(a);
    expect((await call(open.url, 'GET', '/api/records?analysis=mock-wait&limit=1')).body.records).toHaveLength(1);
    const refused = await call(open.url, 'GET', `/api/records?filter=${encodeURIComponent('{"$where":"1"}')}`);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatch(/\$where/);
    expect((await call(open.url, 'GET', '/api/records?filter=not-json')).status).toBe(400);

    const why = await call(open.url, 'GET', `/api/records/${b}/why?against=${a}`);
    expect(why.status).toBe(200);
    expect(why.body.compared).toEqual([
      expect.objectContaining({ against: a, differences: [{ path: 'parameters.wait', this: 0.1, against: 0 }] }),
    ]);
    const nearest = await call(open.url, 'GET', `/api/records/${b}/why`);
    expect(nearest.body.compared[0].against).toBe(a);
    expect((await call(open.url, 'GET', `/api/records/${'f'.repeat(64)}/why`)).status).toBe(404);
    expect((await call(open.url, 'GET', '/api/records/not-an-identity/why')).status).toBe(400);
  });

  it('DELETE cancels a queued job at once and a running one through its runner (recorded); a done one is 409, an unknown one 404', async () => {
    const gate = path.join(base, 'gate');
    process.env.CAAS_MOCK_GATE_FILE = gate;
    let waiting = '';
    try {
      const running = (await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('cancel-running') })).body.jobs[0].identity;
      waiting = (await call(open.url, 'POST', '/api/jobs?execute=true', { body: job('cancel-waiting') })).body.jobs[0].identity;
      await until(
        'the first job to run',
        async () => (await call(open.url, 'GET', `/api/jobs/${running}`)).body.record?.status === 'running',
      );

      const dequeued = await call(open.url, 'DELETE', `/api/jobs/${waiting}`);
      expect(dequeued.status).toBe(200);
      expect(dequeued.body).toMatchObject({ cancelled: 'queued', reason: expect.stringMatching(/cancelled through the API/) });
      expect((await call(open.url, 'GET', `/api/jobs/${waiting}`)).body.state).toBe('cancelled');

      const stopped = await call(open.url, 'DELETE', `/api/jobs/${running}`);
      expect(stopped.status).toBe(200);
      expect(stopped.body.cancelled).toBe('running');
      const over = await until('the cancelled attempt to be recorded', async () => {
        const { body } = await call(open.url, 'GET', `/api/jobs/${running}`);
        return body.record?.status === 'failed' && body.queue?.state === 'cancelled' ? body : undefined;
      });
      expect(over.record.reason).toMatch(/cancelled through the API/);
      expect((await call(open.url, 'DELETE', `/api/jobs/${running}`)).status).toBe(409);
      expect((await call(open.url, 'DELETE', `/api/jobs/${'e'.repeat(64)}`)).status).toBe(404);
    } finally {
      writeFileSync(gate, '');
      delete process.env.CAAS_MOCK_GATE_FILE;
    }
    // With the gate open and the server idle again, the job cancelled while it waited was never taken.
    await until('the queue to be idle', async () =>
      ((await call(open.url, 'GET', '/api/jobs')).body.jobs as Json[]).every((j) => j.state !== 'queued' && j.state !== 'taken'),
    );
    expect((await call(open.url, 'GET', `/api/jobs/${waiting}`)).body).toMatchObject({
      state: 'cancelled',
      attempts: 0,
      record: null,
      queue: { tries: 0 },
    });
  });

  it("a group's token is 401 when missing or unknown, sees 404 (not 403) for another group's job, record and output, and cannot submit into it", async () => {
    const missing = await call(guarded.url, 'GET', '/api/analyses');
    expect(missing.status).toBe(401);
    expect(missing.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await call(guarded.url, 'GET', '/api/analyses', { token: 'caas_wrong' })).status).toBe(401);
    expect((await call(guarded.url, 'GET', '/api/analyses', { token: tokens.caas })).status).toBe(200);

    const accepted = await call(guarded.url, 'POST', '/api/jobs?execute=true', { token: tokens.caas, body: job('isolated') });
    expect(accepted.status).toBe(202);
    const { identity } = accepted.body.jobs[0];
    await succeeded(guarded, identity, tokens.caas);

    for (const route of [
      `/api/jobs/${identity}`,
      `/api/jobs/${identity}/outputs/waited.json`,
      `/api/jobs/${identity}/events`,
      `/api/records/${identity}/why`,
    ]) {
      expect((await call(guarded.url, 'GET', route, { token: tokens.demo })).status, route).toBe(404);
    }
    expect((await call(guarded.url, 'DELETE', `/api/jobs/${identity}`, { token: tokens.demo })).status).toBe(404);
    expect((await call(guarded.url, 'GET', '/api/records', { token: tokens.demo })).body.records).toEqual([]);
    expect((await call(guarded.url, 'GET', '/api/jobs', { token: tokens.demo })).body.jobs).toEqual([]);
    expect((await call(guarded.url, 'GET', `/api/jobs/${identity}/outputs/..%2Flogs%2Fstdout.txt`, { token: tokens.caas })).status).toBe(
      400,
    );

    const into = await call(guarded.url, 'POST', '/api/jobs?execute=true', {
      token: tokens.demo,
      body: job('elsewhere', {}, { group: 'caas' }),
    });
    expect(into.status).toBe(400);
    expect(into.body.jobs[0]).toMatchObject({
      action: 'INVALID',
      issues: [{ path: ['group'], message: 'this token submits into group "demo" only' }],
    });

    expect((await call(guarded.url, 'GET', `/api/jobs/${identity}`, { token: tokens.admin })).body.state).toBe('succeeded');
    expect(
      (await call(guarded.url, 'GET', '/api/records', { token: tokens.admin })).body.records.map((r: { _id: string }) => r._id),
    ).toEqual([identity]);
    expect((await call(guarded.url, 'GET', '/api/jobs', { token: tokens.caas })).body.jobs.map((j: { _id: string }) => j._id)).toEqual([
      identity,
    ]);
  });

  it('POST /api/dispatch turns a prefix into job inputs and plans them; a second source is 400', async () => {
    const datasets = path.join(base, 'datasets');
    mkdirSync(path.join(datasets, 's1'), { recursive: true });
    writeFileSync(path.join(datasets, 's1', 'session.json'), '{}\n');
    const prefix = `file://${datasets}/`;
    const planned = await call(open.url, 'POST', '/api/dispatch', {
      body: { analysis: 'mock-wait', prefix, file_ext: '.json', params: { wait: 0 } },
    });
    expect(planned.status, planned.text).toBe(200);
    expect(planned.body.dispatched.jobs).toBe(1);
    expect(planned.body.jobs[0]).toMatchObject({
      action: expect.stringMatching(/^(RUN|SKIP)$/),
      identity: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    const both = await call(open.url, 'POST', '/api/dispatch', { body: { analysis: 'mock-wait', prefix, assets: ['a'] } });
    expect(both.status).toBe(400);
    expect((await call(open.url, 'POST', '/api/dispatch', { body: { analysis: 'mock-wait', prefix, bogus: 1 } })).body.issues).toEqual([
      { path: [], message: expect.stringMatching(/bogus/) },
    ]);
    expect((await call(open.url, 'POST', '/api/dispatch', { body: { analysis: 'no-such', prefix } })).status).toBe(404);
    const badParams = await call(open.url, 'POST', '/api/dispatch', { body: { analysis: 'mock-wait', prefix, params: { wait: 'x' } } });
    expect(badParams.status).toBe(400);
    expect(badParams.body.error).not.toContain('/tmp');
  });

  it('GET /healthz and /readyz answer 200 when the DB and the store answer', async () => {
    expect(await call(open.url, 'GET', '/healthz')).toMatchObject({ status: 200, body: { ok: true } });
    expect(await call(guarded.url, 'GET', '/readyz')).toMatchObject({ status: 200, body: { ok: true, checks: { db: 'ok', store: 'ok' } } });
  });

  it('the OpenAPI 3.1 document is generated, holds to the 3.1 rules, lists every route with its responses, and every $ref in it resolves', async () => {
    const { status, body: doc } = await call(guarded.url, 'GET', '/api/openapi.json');
    expect(status).toBe(200);
    expect(openApi31Problems(doc)).toEqual([]);
    // The checks catch what they are there for.
    const broken = structuredClone(doc);
    broken.openapi = '3.0.3';
    broken.paths['/api/jobs/{identity}'].get.parameters = [];
    delete broken.paths['/api/analyses'].get.responses['200'].description;
    broken.components = {
      ...broken.components,
      schemas: { Old: { type: 'object', properties: { n: { type: 'number', nullable: true } } } },
    };
    expect(openApi31Problems(broken)).toEqual([
      'openapi: expected "3.1.x"',
      'GET /api/analyses 200: a response needs a description',
      'GET /api/jobs/{identity}: path template {identity} has no path parameter',
      'components.schemas.Old.properties.n: "nullable" is OpenAPI 3.0; 3.1 uses type [..., "null"]',
    ]);
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(doc.info).toMatchObject({ title: expect.any(String), version: expect.any(String) });
    const listed = Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>).flatMap(
      ([route, operations]) =>
        Object.entries(operations).map(([method, operation]) => {
          expect(Object.keys(operation.responses).length, `${method} ${route}`).toBeGreaterThan(0);
          return `${method.toUpperCase()} ${route}`;
        }),
    );
    expect(new Set(listed)).toEqual(new Set(API_ROUTES));
    for (const route of [
      'GET /api/analyses',
      'POST /api/jobs',
      'POST /api/dispatch',
      'GET /api/jobs/{identity}',
      'GET /api/jobs/{identity}/events',
      'GET /api/jobs/{identity}/outputs/{path}',
      'GET /api/records',
      'GET /api/records/{identity}/why',
      'DELETE /api/jobs/{identity}',
      'GET /api/analyses/{name}',
    ]) {
      expect(listed).toContain(route);
    }
    const refs: string[] = [];
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node && typeof node === 'object') {
        for (const [key, value] of Object.entries(node)) {
          if (key === '$ref' && typeof value === 'string') refs.push(value);
          else walk(value);
        }
      }
    };
    walk(doc);
    for (const ref of refs) {
      expect(ref.startsWith('#/')).toBe(true);
      const target = ref
        .slice(2)
        .split('/')
        .reduce<Json>((at, part) => at?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], doc);
      expect(target, ref).toBeDefined();
    }
    const submit = doc.paths['/api/jobs'].post;
    expect(Object.keys(submit.responses).sort()).toEqual(['200', '202', '400', '401', '403', '404', '413', '415', '429']);
    expect(JSON.stringify(submit.requestBody)).toContain('"inputs"');
  });
});

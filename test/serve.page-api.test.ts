import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing, tokenHash } from '../server/tokens.ts';
import { call, serviceSettings, until } from './support/service.ts';
import { AnalysisRepo, removeDir, runCli, scratchDir } from './support/workspace.ts';

/** The routes the page needs beyond the job API, against a listening server with group tokens. */
describe('caas serve: the API the page uses', () => {
  let base: string;
  let service: RunningService;
  const tokens = { caas: 'caas_page-api-caas', demo: 'caas_page-api-demo' };

  beforeAll(async () => {
    base = scratchDir('serve-page-api');
    const home = path.join(base, 'home');
    const repo = new AnalysisRepo(base, ['unit-filter']);
    process.env.CAAS_ANALYSES = repo.dir;
    const sample = await runCli(['catalog', 'generate-sample'], { env: { CAAS_HOME: home, CAAS_ANALYSES: repo.dir } });
    expect(sample.code, sample.stderr).toBe(0);
    service = await startService({
      ...serviceSettings(home),
      leaseMs: 5000,
      tokens: new TokenRing([
        { name: 'caas-lab', group: 'caas', sha256: tokenHash(tokens.caas), created: '' },
        { name: 'demo-lab', group: 'demo', sha256: tokenHash(tokens.demo), created: '' },
      ]),
    });
  });
  afterAll(async () => {
    await service?.stop(0);
    delete process.env.CAAS_ANALYSES;
    removeDir(base);
  });

  it('GET /api/catalog: the assets a filter matches, with limit and more; a refused or broken filter is 400; no token 401', async () => {
    const all = await call(service.url, 'GET', '/api/catalog', { token: tokens.demo });
    expect(all.status).toBe(200);
    expect(all.body.assets).toHaveLength(6);
    expect(all.body.more).toBe(false);
    const filter = encodeURIComponent(JSON.stringify({ 'subject.subject_id': '774660' }));
    const some = await call(service.url, 'GET', `/api/catalog?filter=${filter}&limit=2`, { token: tokens.demo });
    expect(some.status).toBe(200);
    expect(some.body.assets.map((a: { subject: { subject_id: string } }) => a.subject.subject_id)).toEqual(['774660', '774660']);
    expect(some.body.more).toBe(true);

    const where = await call(service.url, 'GET', `/api/catalog?filter=${encodeURIComponent('{"$where": "1"}')}`, { token: tokens.demo });
    expect(where.status).toBe(400);
    expect(where.body.error).toMatch(/\$where/);
    expect((await call(service.url, 'GET', '/api/catalog?filter=%7Bnope', { token: tokens.demo })).status).toBe(400);
    expect((await call(service.url, 'GET', '/api/catalog?limit=0', { token: tokens.demo })).status).toBe(400);
    expect((await call(service.url, 'GET', '/api/catalog')).status).toBe(401);
  });

  it('POST /api/dispatch: parameters the model refuses are 400 with their paths under params, for one set or a list; nothing is queued', async () => {
    const dispatch = (params: unknown) =>
      call(service.url, 'POST', '/api/dispatch', {
        token: tokens.caas,
        body: { analysis: 'unit-filter', assets: ['any'], params, execute: true },
      });
    const one = await dispatch({ isi_violations_cutoff: 2, nope: 1 });
    expect(one.status).toBe(400);
    expect(one.body.issues).toEqual([
      { path: ['params', 'isi_violations_cutoff'], message: expect.stringMatching(/<=1/) },
      { path: ['params', 'nope'], message: expect.stringMatching(/Unrecognized key/) },
    ]);
    expect(one.body.error).toMatch(/^params\.isi_violations_cutoff: .*; params\.nope: /);
    const grid = await dispatch([{ isi_violations_cutoff: 0.1 }, { refractory_ms: -1 }]);
    expect(grid.status).toBe(400);
    expect(grid.body.issues).toEqual([{ path: ['params', 1, 'refractory_ms'], message: expect.any(String) }]);
    expect(grid.body.error).toMatch(/^params\[1\]\.refractory_ms: /);
    expect((await call(service.url, 'GET', '/api/jobs', { token: tokens.caas })).body.jobs).toEqual([]);
  });

  it("GET /api/jobs/{identity}/certificate: the job's certificate for its group; another group's token gets 404, as for a job that does not exist", async () => {
    const filter = { name: 'ecephys_774659_2024-03-04_10-00-00_processed' };
    const queued = await call(service.url, 'POST', '/api/dispatch', {
      token: tokens.caas,
      body: { analysis: 'unit-filter', query: filter, file_ext: '.spikes.json', execute: true },
    });
    expect(queued.status).toBe(202);
    const identity: string = queued.body.jobs[0].identity;
    await until('the job to succeed', async () => {
      const { body } = await call(service.url, 'GET', `/api/jobs/${identity}`, { token: tokens.caas });
      return body.state === 'succeeded';
    });
    const mine = await call(service.url, 'GET', `/api/jobs/${identity}/certificate`, { token: tokens.caas });
    expect(mine.status).toBe(200);
    expect(mine.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(mine.text).toMatch(/job succeeded/);

    const theirs = await call(service.url, 'GET', `/api/jobs/${identity}/certificate`, { token: tokens.demo });
    const none = await call(service.url, 'GET', `/api/jobs/${'0'.repeat(64)}/certificate`, { token: tokens.demo });
    expect(theirs.status).toBe(404);
    expect(none.status).toBe(404);
    expect(theirs.text.replace(identity, '0'.repeat(64))).toBe(none.text);
    expect((await call(service.url, 'GET', '/api/jobs/not-an-identity/certificate', { token: tokens.caas })).status).toBe(400);
  });

  it('serves the page at / and its files by exact name only, with a policy that keeps it to its own origin', async () => {
    const page = await fetch(`${service.url}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toMatch(/default-src 'none'; script-src 'self'/);
    expect(await page.text()).toContain('<script type="module" src="/web/app.js">');
    const script = await fetch(`${service.url}/web/app.js`);
    expect(script.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await fetch(`${service.url}/web/..%2Fweb.ts`)).status).toBe(404);
    expect((await fetch(`${service.url}/web/nothing.js`)).status).toBe(404);
  });
});

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing, tokenHash } from '../server/tokens.ts';
import { call } from './support/service.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

/**
 * What a browser can be made to send to the service from another site, and what the service answers
 * a client that sends something other than a JSON object, against real listening servers.
 */
describe('caas serve: requests from elsewhere and bodies that are not JSON objects', () => {
  let base: string;
  let data: string;
  let open: RunningService;
  let guarded: RunningService;
  const token = 'caas_guards-token-of-group-caas';
  const settings = (home: string) => ({
    home,
    storeUrl: 'file:',
    dbUrl: 'sqlite:',
    host: '127.0.0.1',
    port: 0,
    compute: 'inline',
    concurrency: 1,
    leaseMs: 3000,
    statusIntervalMs: 500,
    allowDirty: false,
    maxBodyBytes: 64 * 1024,
    pollMs: 50,
    log: () => {},
  });

  beforeAll(async () => {
    base = scratchDir('serve-guards');
    const repo = new AnalysisRepo(base);
    process.env.CAAS_ANALYSES = repo.dir;
    data = path.join(base, 'data', 'session.json');
    mkdirSync(path.dirname(data), { recursive: true });
    writeFileSync(data, '{}\n');
    open = await startService({ ...settings(path.join(base, 'open')), tokens: new TokenRing([]) });
    guarded = await startService({
      ...settings(path.join(base, 'guarded')),
      tokens: new TokenRing([{ name: 'caas-lab', group: 'caas', sha256: tokenHash(token), created: '' }]),
    });
  });
  afterAll(async () => {
    await open?.stop(0);
    await guarded?.stop(0);
    delete process.env.CAAS_ANALYSES;
    removeDir(base);
  });

  it('malformed JSON and bodies that are not job inputs are 400 in the error shape on every POST route, never 5xx', async () => {
    for (const route of ['/api/jobs', '/api/jobs?execute=true', '/api/dispatch']) {
      for (const text of ['{"analysis":', 'not json', '']) {
        const answer = await call(open.url, 'POST', route, { raw: text });
        expect(answer.status, `${route} ${JSON.stringify(text)}`).toBe(400);
        expect(answer.body.error, `${route} ${JSON.stringify(text)}`).toMatch(/^body: /);
      }
      for (const text of ['42', '"a job"', 'null', 'true', '[1, "x"]', '[]']) {
        const answer = await call(open.url, 'POST', route, { raw: text });
        expect(answer.status, `${route} ${text}`).toBe(400);
        expect(answer.body, `${route} ${text}`).toEqual(
          expect.objectContaining(answer.body.jobs ? { jobs: expect.any(Array) } : { error: expect.any(String) }),
        );
        for (const one of answer.body.jobs ?? [])
          expect(one).toMatchObject({ action: 'INVALID', queued: false, issues: [expect.anything()] });
      }
    }
    expect((await call(open.url, 'GET', '/api/jobs')).body.jobs).toEqual([]);
  });
});

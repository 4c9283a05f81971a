import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing, tokenHash } from '../server/tokens.ts';
import { call, type Json, mockWaitJob, serviceSettings, until } from './support/service.ts';
import { AnalysisRepo, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/**
 * Which group a job of a token goes into, whichever model it comes as (a caas job input, an AIND
 * dispatch model), and who it runs for: the token's name, recorded, and held to the group's users.
 */
describe('caas serve: groups and submitters', () => {
  let base: string;
  let data: string;
  let guarded: RunningService;
  const servers: RunningService[] = [];
  const tokens = { demo: 'caas_groups-demo', alice: 'caas_groups-alice', bob: 'caas_groups-bob', admin: 'caas_groups-admin' };
  const job = (asset: string, extra: Record<string, unknown> = {}) => mockWaitJob(data, asset, {}, extra);
  /** An AIND AnalysisDispatchModel of one asset, as aind-analysis-job-dispatch writes it, naming its analysis under `caas`. */
  const aind = (asset: string, caas: Record<string, unknown> = {}) => ({
    s3_location: [`file://${path.dirname(data)}/`],
    asset_name: [asset],
    docdb_record_id: [asset],
    file_location: [`file://${data}`],
    distributed_parameters: { wait: 0 },
    group_metadata: null,
    query: null,
    analysis_code: null,
    caas: { analysis: 'mock-wait', ...caas },
  });
  const settings = (home: string) => ({ ...serviceSettings(home), concurrency: 2 });
  const start = async (options: Parameters<typeof startService>[0]) => {
    const service = await startService(options);
    servers.push(service);
    return service;
  };
  const succeeded = (identity: string, token: string) =>
    until(`${identity} to succeed`, async () => {
      const { body } = await call(guarded.url, 'GET', `/api/jobs/${identity}`, { token });
      return body.state === 'succeeded' && body.queue?.state === 'done' ? (body as Json) : undefined;
    });

  beforeAll(async () => {
    base = scratchDir('serve-groups');
    const repo = new AnalysisRepo(base);
    const blueprint = JSON.parse(readFileSync(path.join(repo.dir, 'mock-wait/blueprint.json'), 'utf8'));
    blueprint.groups.push({ name: 'lab', users: ['alice'] });
    repo.write('mock-wait/blueprint.json', `${JSON.stringify(blueprint, null, 2)}\n`);
    repo.commit('group lab admits alice only');
    process.env.CAAS_ANALYSES = repo.dir;
    data = sessionFile(base);
    guarded = await start({
      ...settings(path.join(base, 'guarded')),
      tokens: new TokenRing([
        { name: 'demo-lab', group: 'demo', sha256: tokenHash(tokens.demo), created: '' },
        { name: 'alice', group: 'lab', sha256: tokenHash(tokens.alice), created: '' },
        { name: 'bob', group: 'lab', sha256: tokenHash(tokens.bob), created: '' },
        { name: 'ops', group: null, sha256: tokenHash(tokens.admin), created: '' },
      ]),
    });
  });
  afterAll(async () => {
    for (const service of servers) await service.stop(0);
    delete process.env.CAAS_ANALYSES;
    removeDir(base);
  });

  it("an AIND dispatch model from a group token goes into the token's group and runs; one naming another group under caas.group is INVALID there and never runs", async () => {
    const planned = await call(guarded.url, 'POST', '/api/jobs', { token: tokens.demo, body: aind('aind-own') });
    expect(planned.status, planned.text).toBe(200);
    expect(planned.body.jobs[0]).toMatchObject({ action: 'RUN', issues: [] });

    const accepted = await call(guarded.url, 'POST', '/api/jobs?execute=true', { token: tokens.demo, body: aind('aind-own') });
    expect(accepted.status).toBe(202);
    const { identity } = accepted.body.jobs[0];
    expect(identity).toBe(planned.body.jobs[0].identity);
    const done = await succeeded(identity, tokens.demo);
    expect(done).toMatchObject({ group: 'demo', record: { job: { group: 'demo' } } });
    // The same job named in the token's group is the same job.
    expect(
      (await call(guarded.url, 'POST', '/api/jobs', { token: tokens.demo, body: aind('aind-own', { group: 'demo' }) })).body.jobs[0],
    ).toMatchObject({
      action: 'SKIP',
      identity,
    });

    const elsewhere = await call(guarded.url, 'POST', '/api/jobs?execute=true', {
      token: tokens.demo,
      body: aind('aind-other', { group: 'caas' }),
    });
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.body.jobs[0]).toMatchObject({
      action: 'INVALID',
      identity: null,
      queued: false,
      issues: [{ path: ['caas', 'group'], message: 'this token submits into group "demo" only' }],
    });
    const plain = await call(guarded.url, 'POST', '/api/jobs?execute=true', {
      token: tokens.demo,
      body: job('plain-other', { group: 'caas' }),
    });
    expect(plain.body.jobs[0]).toMatchObject({
      action: 'INVALID',
      issues: [{ path: ['group'], message: 'this token submits into group "demo" only' }],
    });
    const queue = (await call(guarded.url, 'GET', '/api/jobs', { token: tokens.admin })).body.jobs as Json[];
    expect(queue.map((q) => q._id)).toEqual([identity]);
  });

  it("a token's jobs run for its name: kept on the queue entry and the record's attempt; a group with users admits only the tokens it lists, an admin's too", async () => {
    const accepted = await call(guarded.url, 'POST', '/api/jobs?execute=true', { token: tokens.demo, body: job('by-token') });
    expect(accepted.status).toBe(202);
    const done = await succeeded(accepted.body.jobs[0].identity, tokens.demo);
    expect(done.queue.submitter).toEqual({ user: 'demo-lab', via: 'token' });
    expect(done.record.attempts[0].submitter).toEqual({ user: 'demo-lab', via: 'token' });

    // lab lists alice: her token's job is planned, queued, planned again by the worker and run for her.
    const alice = await call(guarded.url, 'POST', '/api/jobs?execute=true', { token: tokens.alice, body: job('for-alice') });
    expect(alice.status, alice.text).toBe(202);
    expect(alice.body.jobs[0]).toMatchObject({ action: 'RUN', queued: true });
    const hers = await succeeded(alice.body.jobs[0].identity, tokens.alice);
    expect(hers).toMatchObject({ group: 'lab', record: { attempts: [{ submitter: { user: 'alice', via: 'token' } }] } });

    for (const [who, token] of [
      ['bob', tokens.bob],
      ['ops', tokens.admin],
    ] as const) {
      const refused = await call(guarded.url, 'POST', '/api/jobs?execute=true', { token, body: job(`for-${who}`, { group: 'lab' }) });
      expect(refused.status, who).toBe(400);
      expect(refused.body.jobs[0]).toMatchObject({
        action: 'INVALID',
        queued: false,
        reason: `group: user "${who}" is not one of the users of group "lab" of mock-wait`,
      });
    }
  });

  it('with no tokens, a group with users admits the jobs of the --user it lists, and refuses them without one', async () => {
    const nobody = await start({ ...settings(path.join(base, 'nobody')), tokens: new TokenRing([]) });
    const refused = await call(nobody.url, 'POST', '/api/jobs', { body: job('loopback', { group: 'lab' }) });
    expect(refused.status).toBe(400);
    expect(refused.body.jobs[0].reason).toMatch(/group "lab" of mock-wait admits only its listed users: say who you run for with --user/);

    const declared = await start({ ...settings(path.join(base, 'declared')), user: 'alice', tokens: new TokenRing([]) });
    const accepted = await call(declared.url, 'POST', '/api/jobs?execute=true', { body: job('loopback', { group: 'lab' }) });
    expect(accepted.status, accepted.text).toBe(202);
    const done = await until('the job to succeed', async () => {
      const { body } = await call(declared.url, 'GET', `/api/jobs/${accepted.body.jobs[0].identity}`);
      return body.state === 'succeeded' ? (body as Json) : undefined;
    });
    expect(done.record.attempts[0].submitter).toEqual({ user: 'alice', via: 'declared' });
  });
});

import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { EC2Client } from '@aws-sdk/client-ec2';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../backends/storage/index.ts';
import { type S3rverHandle, startS3rver } from '../fixtures/s3rver.ts';
import { type RunningService, startService } from '../server/listen.ts';
import { TokenRing } from '../server/tokens.ts';
import { JobRunner } from '../wrapper/run.ts';
import { call, type Json, until } from './support/service.ts';
import { AnalysisRepo, readRecords, removeDir, scratchDir } from './support/workspace.ts';

// Nothing here may reach AWS: a launch that got through would show up as a call on this mock.
const ec2 = mockClient(EC2Client);

/** Open file descriptors of this process on files under `dir` (a leaked SQLite handle keeps some). */
function openFilesUnder(dir: string): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(`${dir}/`) ? [target] : [];
    } catch {
      return [];
    }
  });
}

/**
 * The service's runner answers what it cannot run (a launcher's refusal, a missing analysis bucket)
 * as refused, once, before any claim, as `caas run` does; and shares one DB handle between jobs.
 */
describe('caas serve: the queue worker', () => {
  let base: string;
  let s3: S3rverHandle;
  let storeUrl: string;
  const servers: RunningService[] = [];
  const job = (asset: string, extra: Record<string, unknown> = {}) => ({
    analysis: 'mock-wait',
    inputs: [{ asset_id: asset, name: asset, location: 's3://data/', files: [{ url: 's3://data/session.json' }] }],
    parameters: { wait: 0 },
    ...extra,
  });
  const serve = async (label: string, compute: string) => {
    const service = await startService({
      home: path.join(base, label),
      storeUrl,
      dbUrl: 'sqlite:',
      host: '127.0.0.1',
      port: 0,
      compute,
      concurrency: 2,
      leaseMs: 1000,
      statusIntervalMs: 250,
      allowDirty: false,
      maxBodyBytes: 64 * 1024,
      pollMs: 50,
      log: () => {},
      tokens: new TokenRing([]),
    });
    servers.push(service);
    return service;
  };
  const answered = (service: RunningService, identity: string) =>
    until(
      `${identity} to be answered in the queue`,
      async () => {
        const { body } = await call(service.url, 'GET', `/api/jobs/${identity}`);
        return body.queue?.state === 'done' ? (body as Json) : undefined;
      },
      10_000,
      100,
    );

  beforeAll(async () => {
    base = scratchDir('serve-worker');
    const repo = new AnalysisRepo(base);
    // Without an image, the ec2 launcher cannot run mock-wait: it says so before anything is started.
    const { ami: _ami, ...blueprint } = JSON.parse(readFileSync(path.join(repo.dir, 'mock-wait/blueprint.json'), 'utf8'));
    repo.write('mock-wait/blueprint.json', `${JSON.stringify(blueprint, null, 2)}\n`);
    repo.commit('mock-wait without an ami');
    process.env.CAAS_ANALYSES = repo.dir;
    s3 = await startS3rver();
    storeUrl = `s3://?endpoint=${s3.endpoint}`;
    const store = await openStore(storeUrl, { home: base });
    await store.createBucket('data');
    await store.createBucket('mock-wait');
    await store.put('data', 'session.json', '{}\n');
    await store.close();
  });
  afterAll(async () => {
    for (const service of servers) await service.stop(0);
    await s3?.stop();
    delete process.env.CAAS_ANALYSES;
    ec2.restore();
    removeDir(base);
  });

  it("a job its launcher refuses (ec2 with no ami in the blueprint) is answered refused with the launcher's reason, never claimed or launched", async () => {
    const service = await serve('no-ami', 'ec2');
    const accepted = await call(service.url, 'POST', '/api/jobs?execute=true', { body: job('no-ami') });
    expect(accepted.status).toBe(202);
    const { identity } = accepted.body.jobs[0];
    const status = await answered(service, identity);
    expect(status).toMatchObject({
      state: 'refused',
      record: null,
      queue: { state: 'done', outcome: 'refused', tries: 1, reason: expect.stringMatching(/the blueprint of mock-wait names no "ami"/) },
    });
    expect(await readRecords(path.join(base, 'no-ami'))).toEqual([]);
    expect(ec2.calls()).toEqual([]);
  });

  it('a job whose analysis bucket does not exist in S3 is answered refused, once, with how to create it; it is not put back to be taken again', async () => {
    const service = await serve('no-bucket', 'inline');
    const accepted = await call(service.url, 'POST', '/api/jobs?execute=true', { body: job('no-bucket', { bucket: 'no-such-bucket' }) });
    expect(accepted.status).toBe(202);
    const { identity } = accepted.body.jobs[0];
    const status = await answered(service, identity);
    expect(status).toMatchObject({
      state: 'refused',
      queue: {
        state: 'done',
        outcome: 'refused',
        tries: 1,
        reason: expect.stringMatching(/analysis bucket no-such-bucket does not exist/),
      },
    });
    // Several leases later it is still answered, taken once.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await call(service.url, 'GET', `/api/jobs/${identity}`)).body.queue).toMatchObject({ state: 'done', tries: 1 });
    expect(await readRecords(path.join(base, 'no-bucket'))).toEqual([]);
  });

  it("jobs that start together share the runner's one DB handle: none is left open once it closes", async () => {
    const home = path.join(base, 'handles');
    const store = await openStore('file:', { home });
    const runner = await JobRunner.open({ compute: 'inline', home, dbUrl: 'sqlite:', leaseMs: 3000 }, store, () => {});
    await Promise.all([runner.ready([]), runner.ready([]), runner.ready([])]);
    expect(openFilesUnder(home)).toContain(path.join(home, 'metadata.sqlite'));
    await runner.close();
    await store.close();
    expect(openFilesUnder(home)).toEqual([]);
  });
});

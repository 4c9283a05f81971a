import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLauncher } from '../backends/compute/index.ts';
import { openDatabase } from '../backends/db/index.ts';
import { openStore } from '../backends/storage/index.ts';
import { MetadataRecord } from '../models/record.ts';
import { AGENT_PROGRAM } from '../wrapper/agent-program.ts';
import { executeJob } from '../wrapper/execute.ts';
import type { PlanEntry } from '../wrapper/gate.ts';
import { enterGroup } from '../wrapper/group-budget.ts';
import { JobPreparer } from '../wrapper/prepare.ts';
import { runBatch } from '../wrapper/run.ts';
import { handleS3Event } from '../wrapper/s3-event-handler.ts';
import { submitFiles } from '../wrapper/submit-client.ts';
import { SubmissionWatcher } from '../wrapper/watch.ts';
import { AnalysisRepo, mockJob, readRecords, removeDir, runCli, scratchDir, sessionFile, treeDigest } from './support/workspace.ts';

/** Runs a little over a second: at the blueprint's $36 an hour (a cent a second), a job costs a cent or two. */
const SECOND = `#!/usr/bin/env bash
set -eu
sleep 1
echo done > "$CAAS_OUTPUT_DIR/done.txt"
`;

const GROUPS = [
  { name: 'lab-a', budget: { usd: 0.005, period: 'month' } },
  { name: 'lab-b', budget: { usd: 100, period: 'month' } },
  { name: 'lab-c', users: ['alice', 'AIDAALICE'] },
  { name: 'broke', budget: { usd: 0, period: 'day' } },
  { name: 'one-at-a-time', instance_limit: 1 },
];

describe('user groups: who may run, how many at once, and how much they may spend', () => {
  let base: string;
  let repo: AnalysisRepo;
  let data: string;
  const env = () => ({ CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500' });
  const job = (id: string, group: string) => mockJob(id, { mode: id }, data, { analysis: 'budgeted', group });
  const jobsFile = (name: string, lines: string[]) => {
    const file = path.join(base, `${name}.jsonl`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  };
  const lines = (text: string, start: string) => text.split('\n').filter((line) => line.startsWith(start));

  beforeAll(() => {
    base = scratchDir('group-budget');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('budgeted', SECOND, { instance_type: 't3.micro', prices: { 't3.micro': 36 }, groups: GROUPS });
    // A job here can cost $6 at most (10 minutes at $36 an hour), so the $5 cap admits one at a time.
    repo.addScriptAnalysis('one-fits', SECOND, {
      instance_type: 't3.micro',
      prices: { 't3.micro': 36 },
      groups: [{ name: 'lab', budget: { usd: 5, period: 'month' } }],
    });
    data = sessionFile(base);
  });
  afterAll(() => removeDir(base));

  it("two groups with caps: the group over its cap is refused with the cap, its spend and the period named (exit 3), the other group's jobs run; the dry run then shows the refusals and writes nothing", {
    timeout: 180_000,
  }, async () => {
    const home = path.join(base, 'home-caps');
    const jobs = jobsFile('caps', [
      job('a1', 'lab-a'),
      job('a2', 'lab-a'),
      job('a3', 'lab-a'),
      job('b1', 'lab-b'),
      job('b2', 'lab-b'),
      job('b3', 'lab-b'),
    ]);

    const run = await runCli(['--home', home, 'run', jobs, '--execute', '--concurrency', '1'], { env: env() });

    expect(run.code, run.stderr).toBe(3);
    const refused = lines(run.stdout, 'REFUSED');
    expect(refused).toHaveLength(2);
    for (const line of refused) {
      expect(line).toMatch(
        /budget of group "lab-a" of budgeted reached: \$0\.\d{2,4} spent this month \(since \d{4}-\d{2}-01 UTC\), cap \$0\.0050 per month; the job was not started \(raise budget\.usd in its blueprint or wait for the next month\)/,
      );
    }
    expect(run.stdout).toMatch(/done: 4 succeeded, 0 failed, 0 taken by other runners, 0 lost, 2 refused by their group/);
    const records = (await readRecords(home)).map((r) => MetadataRecord.parse(r));
    expect(records.map((r) => [r.job?.group, r.status]).sort()).toEqual([
      ['lab-a', 'succeeded'],
      ['lab-b', 'succeeded'],
      ['lab-b', 'succeeded'],
      ['lab-b', 'succeeded'],
    ]);
    for (const record of records) {
      const cost = record.attempts[0]!.cost!;
      expect(cost).toMatchObject({ instance_type: 't3.micro', price_per_hour: 36 });
      expect(cost.runtime_s).toBeGreaterThanOrEqual(1);
      expect(cost.usd).toBeCloseTo((cost.runtime_s * 36) / 3600, 10);
    }

    const before = treeDigest(home);
    const dry = await runCli(['--home', home, 'run', jobs], { env: env() });
    expect(dry.code, dry.stderr).toBe(3);
    expect(lines(dry.stdout, 'REFUSED')).toHaveLength(2);
    expect(dry.stdout).toMatch(/REFUSED .*budget of group "lab-a" of budgeted reached: .* cap \$0\.0050 per month/);
    expect(dry.stdout).toMatch(/plan: 0 to run, 4 skipped, 0 running elsewhere, 0 invalid, 2 refused by their group \(dry run/);
    expect(treeDigest(home)).toBe(before);

    const budget = await runCli(['--home', home, 'budget', '--analysis', 'budgeted', '--json'], { env: env() });
    expect(budget.code, budget.stderr).toBe(0);
    const rows = budget.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    const row = (group: string) => rows.find((r) => r.group === group);
    const labA = records.find((r) => r.job?.group === 'lab-a')!;
    expect(row('lab-a')).toMatchObject({ period: 'month', cap_usd: 0.005, running: 0, budget_reached: true, limit_reached: false });
    expect(row('lab-a').spent_usd).toBeCloseTo(labA.attempts[0]!.cost!.usd, 10);
    expect(row('lab-a').since).toMatch(/^\d{4}-\d{2}-01T00:00:00\.000Z$/);
    expect(row('lab-b')).toMatchObject({ cap_usd: 100, budget_reached: false });
    expect(row('lab-b').spent_usd).toBeGreaterThan(0.03);
    expect(row('one-at-a-time')).toMatchObject({ period: null, cap_usd: null, instance_limit: 1, slots: 0 });
    const table = await runCli(['--home', home, 'budget', '--group', 'lab-a'], { env: env() });
    expect(table.stdout).toMatch(/^ANALYSIS +GROUP +PERIOD +SPENT +COMMITTED +CAP +RUNNING +SLOTS +STATE\n/);
    expect(table.stdout).toMatch(
      /budgeted +lab-a +month from \d{4}-\d{2}-01 +\$0\.\d{2,4} +\$0\.\d{2,4} +\$0\.0050 +0 +- +budget reached: new jobs are refused/,
    );
    const unknown = await runCli(['--home', home, 'budget', '--group', 'lab-z'], { env: env() });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--group "lab-z": no blueprint lists it; the groups are .*lab-a, lab-b/);
  });

  it('a job whose group the blueprint does not list, or whose user the group does not list, is INVALID with why; the rest of the batch runs, and an attempt keeps who it ran for', {
    timeout: 120_000,
  }, async () => {
    const home = path.join(base, 'home-access');
    const jobs = jobsFile('access', [job('x1', 'nolab'), job('c1', 'lab-c'), job('b9', 'lab-b')]);

    const bob = await runCli(['--home', home, 'run', jobs, '--execute', '--user', 'bob'], { env: env() });

    expect(bob.code, bob.stderr).toBe(2);
    expect(bob.stdout).toMatch(
      /INVALID .*access\.jsonl:1: group: group "nolab" may not use budgeted: the blueprint lists lab-a, lab-b, lab-c, broke, one-at-a-time/,
    );
    expect(bob.stdout).toMatch(/INVALID .*access\.jsonl:2: group: user "bob" is not one of the users of group "lab-c" of budgeted/);
    expect(lines(bob.stdout, 'SUCCEEDED')).toHaveLength(1);

    const nobody = await runCli(['--home', home, 'run', jobs], { env: env() });
    expect(nobody.stdout).toMatch(
      /group "lab-c" of budgeted admits only its listed users: say who you run for with --user \(or CAAS_USER\)/,
    );

    const alice = await runCli(['--home', home, 'run', jobs, '--execute'], { env: { ...env(), CAAS_USER: 'alice' } });
    expect(alice.code, alice.stderr).toBe(2);
    const records = await readRecords(home);
    const labC = records.find((r) => r.job?.group === 'lab-c');
    expect(labC?.status).toBe('succeeded');
    expect(labC?.attempts[0]?.submitter).toEqual({ user: 'alice', via: 'declared' });
    expect(records.find((r) => r.job?.group === 'lab-b')?.attempts[0]?.submitter).toEqual({ user: 'bob', via: 'declared' });
  });

  it("a job that finds its group's instance_limit reached waits, with a note, then is refused naming the limit; once a slot is given back the next one runs, and gives it back", {
    timeout: 120_000,
  }, async () => {
    const home = path.join(base, 'home-limit');
    const dbUrl = `sqlite:${path.join(home, 'metadata.sqlite')}`;
    const db = await openDatabase(dbUrl, { home });
    const store = await openStore('file:', { home });
    await store.createBucket('budgeted');
    const launcher = await openLauncher('local', { storeUrl: store.url, agent: AGENT_PROGRAM });
    try {
      const elsewhere = { host: 'elsewhere', pid: 1, run: randomUUID() };
      const held = (await db.takeSlot({
        analysis: 'budgeted',
        group: 'one-at-a-time',
        limit: 1,
        identity: 'f'.repeat(64),
        owner: elsewhere,
        leaseMs: 60_000,
        worstUsd: 0,
        instanceType: 't3.micro',
      }))!;
      const prepared = await new JobPreparer({ storeScheme: 'file', allowDirty: false, roots: [repo.dir] }).prepare({
        where: 'jobs:1',
        value: JSON.parse(job('limited', 'one-at-a-time')),
      });
      if (!prepared.ok) throw new Error(prepared.reason);
      const notes: string[] = [];
      const ctx = {
        db,
        store,
        launcher,
        owner: { host: 'here', pid: process.pid, run: randomUUID() },
        leaseMs: 6000,
        note: (l: string) => notes.push(l),
      };

      // The plan says it will wait.
      const planned: PlanEntry[] = [];
      process.env.CAAS_ANALYSES = repo.dir;
      try {
        const source = jobsFile('limited', [job('limited', 'one-at-a-time')]);
        const options = {
          source,
          home,
          storeUrl: 'file:',
          dbUrl,
          compute: 'local',
          execute: false,
          concurrency: 1,
          allowDirty: false,
          leaseMs: 6000,
        };
        await runBatch(options, { plan: (chunk) => planned.push(...chunk), warn: () => {}, result: () => {} });
      } finally {
        delete process.env.CAAS_ANALYSES;
      }
      expect(planned).toMatchObject([
        { action: 'RUN', reason: 'waits for a slot: instance_limit 1 of group "one-at-a-time" reached (1 running)' },
      ]);

      const refused = await executeJob(prepared.job, { ...ctx, slotWaitMs: 2000 });

      expect(refused).toMatchObject({ outcome: 'refused' });
      expect(refused.reason).toBe(
        'instance_limit 1 of group "one-at-a-time" of budgeted stayed reached for 2 s: the job was not started (run it again when the group\'s jobs have ended, or raise instance_limit in the blueprint)',
      );
      expect(notes).toEqual(['instance_limit 1 of group "one-at-a-time" of budgeted reached: a job waits for a slot (up to 2 s)']);
      expect(await db.get(prepared.job.identity)).toBeUndefined();

      setTimeout(() => void db.releaseSlot(held._id, elsewhere), 1000);
      const ran = await executeJob(prepared.job, { ...ctx, slotWaitMs: 60_000 });

      expect(ran).toMatchObject({ outcome: 'succeeded' });
      expect(await db.liveSlots('budgeted', 'one-at-a-time')).toEqual([]);
    } finally {
      await launcher.close();
      await store.close();
      await db.close();
    }
  });

  it('two jobs let into a group at the same moment, where its budget fits one: one starts, the other is refused with the first counted, every time', async () => {
    const home = path.join(base, 'home-contention');
    mkdirSync(home, { recursive: true });
    const db = await openDatabase(`sqlite:${path.join(home, 'metadata.sqlite')}`, { home });
    try {
      const preparer = new JobPreparer({ storeScheme: 'file', allowDirty: false, roots: [repo.dir] });
      const jobs = [];
      for (const id of ['first', 'second']) {
        const prepared = await preparer.prepare({
          where: id,
          value: JSON.parse(mockJob(id, { mode: id }, data, { analysis: 'one-fits', group: 'lab' })),
        });
        if (!prepared.ok) throw new Error(prepared.reason);
        jobs.push(prepared.job);
      }
      for (let round = 0; round < 10; round++) {
        const admissions = await Promise.all(
          jobs.map((job, i) => enterGroup(job, { db, owner: { host: 'here', pid: i, run: `round-${round}-${i}` }, leaseMs: 6000 })),
        );

        expect(admissions.filter((a) => a.admitted)).toHaveLength(1);
        const refused = admissions.find((a) => !a.admitted);
        expect(refused?.admitted === false && refused.reason).toMatch(
          /^budget of group "lab" of one-fits reached: \$0\.00 spent this month \(since .*\) and up to \$6\.00 for 1 running job\(s\), cap \$5\.00 per month/,
        );
        for (const admission of admissions) if (admission.admitted) await admission.leave('recorded');
        expect(await db.liveSlots('one-fits', 'lab')).toEqual([]);
      }
    } finally {
      await db.close();
    }
  });

  it("the watcher answers a submission to a group over its budget with REJECTED and the cap; the S3 event handler holds the uploader to the group's users", {
    timeout: 120_000,
  }, async () => {
    const home = path.join(base, 'home-watch');
    const log: string[] = [];
    const watcher = await SubmissionWatcher.open({
      bucket: 'budgeted',
      home,
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 1,
      leaseMs: 6000,
      allowDirty: false,
      statusIntervalMs: 500,
      roots: [repo.dir],
      log: (line) => log.push(line),
    });
    try {
      const config = path.join(base, 'config.json');
      writeFileSync(config, '{"mode": "watched"}\n');
      const submit = (group: string, timestamp: string) =>
        submitFiles(watcher.store, { bucket: 'budgeted', group, data: [data], config, timestamp }, () => {});
      const endTxt = (group: string, timestamp: string) =>
        readFileSync(
          path.join(home, 'buckets', 'budgeted', group, 'results', `job__budgeted_${timestamp}`, 'process_results', 'end.txt'),
          'utf8',
        );

      await submit('broke', 'over-budget');
      const [broke] = await watcher.pollOnce();
      expect(broke).toMatchObject({ outcome: 'rejected' });
      expect(endTxt('broke', 'over-budget')).toMatch(
        /^REJECTED\nbudget of group "broke" of budgeted reached: \$0\.00 spent today \(since \d{4}-\d{2}-\d{2} UTC\), cap \$0\.00 per day; the job was not started/,
      );

      const event = (key: string, principalId: string) => ({
        Records: [{ eventName: 'ObjectCreated:Put', userIdentity: { principalId }, s3: { bucket: { name: 'budgeted' }, object: { key } } }],
      });
      const mallory = await submit('lab-c', 'by-mallory');
      const [refused] = await handleS3Event(event(mallory.key, 'AWS:AIDAMALLORY'), watcher);
      expect(refused).toMatchObject({
        outcome: 'rejected',
        reason: 'user "AWS:AIDAMALLORY" is not one of the users of group "lab-c" of budgeted',
      });
      expect(endTxt('lab-c', 'by-mallory')).toMatch(/^REJECTED\nuser "AWS:AIDAMALLORY" is not one of the users/);

      const alice = await submit('lab-c', 'by-alice');
      const [ran] = await handleS3Event(event(alice.key, 'AWS:AIDAALICE'), watcher);
      expect(ran).toMatchObject({ outcome: 'succeeded' });
      const [record] = await readRecords(home);
      expect(record?.attempts[0]?.submitter).toEqual({ user: 'AWS:AIDAALICE', via: 's3-event' });
    } finally {
      await watcher.close();
    }
  });
});

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../backends/db/index.ts';
import { S3Store } from '../backends/storage/s3.ts';
import { type S3rverHandle, s3Env, startS3rver } from '../fixtures/s3rver.ts';
import type { MetadataRecord } from '../models/record.ts';
import type { JobResult } from '../wrapper/execute.ts';
import { AnalysisRepo, mockJob, ROOT, removeDir, scratchDir, sessionFile } from './support/workspace.ts';

/** Logs when it starts and ends (nanoseconds, one shared clock), so the test can count how many ran at once. */
const TIMED = `#!/usr/bin/env bash
set -eu
echo "start $(date +%s%N) $$" >> "$GROUP_LOG"
sleep 2
echo "end $(date +%s%N) $$" >> "$GROUP_LOG"
echo done > "$CAAS_OUTPUT_DIR/done.txt"
`;

const LIMIT = 2;

/** The most analyses that ran at the same moment, from their start and end lines. */
function mostAtOnce(log: string): number {
  const events = log
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [kind, at] = line.split(' ');
      return { at: BigInt(at!), delta: kind === 'start' ? 1 : -1 };
    })
    // An end and a start at the same nanosecond: the end first, as a slot is given back before it is taken.
    .sort((a, b) => (a.at === b.at ? a.delta - b.delta : a.at < b.at ? -1 : 1));
  let now = 0;
  let most = 0;
  for (const event of events) {
    now += event.delta;
    most = Math.max(most, now);
  }
  return most;
}

/** One runner process (test/support/ec2-group-runner.ts); it starts its jobs when go() is called. */
function startRunner(config: Record<string, unknown>, env: Record<string, string>) {
  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'test/support/ec2-group-runner.ts'), JSON.stringify(config)],
    { cwd: ROOT, env: { ...process.env, ...env } },
  );
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (stdout.startsWith('ready\n')) resolve();
    });
    child.on('exit', (code) => reject(new Error(`runner exited (${code}) before it was ready: ${stderr}`)));
  });
  const results = new Promise<JobResult[]>((resolve, reject) => {
    child.on('exit', (code) => {
      if (code !== 0) return reject(new Error(`runner exited with ${code}: ${stderr}`));
      resolve(JSON.parse(stdout.slice('ready\n'.length)) as JobResult[]);
    });
  });
  return { ready, results, go: () => child.stdin.end('go\n') };
}

/**
 * A group's instance_limit holds across runners: each runner is its own process with its own
 * (mocked) EC2 account, and only the metadata DB is shared, as it is between laptops and watchers.
 */
describe("a user group's instance_limit", () => {
  let s3: S3rverHandle;
  let base: string;
  let repo: AnalysisRepo;
  let data: string;

  beforeAll(async () => {
    s3 = await startS3rver();
    base = scratchDir('group-limit');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('timed', TIMED, {
      ami: 'ami-0123456789abcdef0',
      groups: [{ name: 'lab', instance_limit: LIMIT }],
      environment: { pass: ['GROUP_LOG'] },
    });
    data = sessionFile(base);
    const store = new S3Store('s3://', { home: base, endpoint: s3.endpoint });
    await store.createBucket('timed');
    await store.close();
  });
  afterAll(async () => {
    await s3.stop();
    removeDir(base);
  });

  it(`4 runners on the EC2 launcher, 2 jobs at a time each, over the same 8 jobs: never more than ${LIMIT} of the group's jobs run at once, and each runs once`, {
    timeout: 300_000,
  }, async () => {
    const log = path.join(base, 'group.log');
    const dbFile = path.join(base, 'metadata.sqlite');
    const jobs = Array.from({ length: 8 }, (_, i) =>
      JSON.parse(mockJob(`s${i}`, { mode: `job-${i}` }, data, { analysis: 'timed', group: 'lab' })),
    );
    const runners = Array.from({ length: 4 }, (_, i) =>
      startRunner(
        { run: `r${i}`, dbUrl: `sqlite:${dbFile}`, s3Endpoint: s3.endpoint, analyses: repo.dir, scratch: base, jobs, concurrency: 2 },
        { ...s3Env(s3.endpoint), GROUP_LOG: log },
      ),
    );
    await Promise.all(runners.map((r) => r.ready));
    for (const r of runners) r.go();

    const results = (await Promise.all(runners.map((r) => r.results))).flat();

    expect(results.filter((r) => r.outcome === 'succeeded')).toHaveLength(8);
    expect(results.filter((r) => r.outcome === 'refused' || r.outcome === 'failed' || r.outcome === 'lost')).toEqual([]);
    const lines = existsSync(log) ? readFileSync(log, 'utf8') : '';
    expect(lines.split('\n').filter((line) => line.startsWith('start'))).toHaveLength(8);
    // The limit was reached (so the test could fail), and never passed.
    expect(mostAtOnce(lines)).toBe(LIMIT);
    const db = await openDatabase(`sqlite:${dbFile}`, { home: base, readOnly: true });
    try {
      const records: MetadataRecord[] = [];
      for await (const record of db.find({ 'analysis.name': 'timed' })) records.push(record);
      expect(records).toHaveLength(8);
      for (const record of records) {
        expect(record.status).toBe('succeeded');
        expect(record.compute.backend).toBe('ec2');
        expect(record.attempts).toHaveLength(1);
      }
      // Every slot was given back.
      expect(await db.liveSlots('timed', 'lab')).toEqual([]);
    } finally {
      await db.close();
    }
  });
});

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SubmissionWatcher } from '../wrapper/watch.ts';
import { AnalysisRepo, mockJob, removeDir, runCli, scratchDir } from './support/workspace.ts';

describe('a watcher on a bucket that caas run also uses', () => {
  let base: string;
  let repo: AnalysisRepo;

  beforeAll(() => {
    base = scratchDir('coexist');
    repo = new AnalysisRepo(base);
  });
  afterAll(() => removeDir(base));

  it("leaves caas run's own job folders alone: no claim, no rejection, no second run", async () => {
    const home = path.join(base, 'home');
    const data = path.join(base, 'data', 'x.json');
    mkdirSync(path.dirname(data), { recursive: true });
    writeFileSync(data, '{}\n');
    const jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(jobs, `${mockJob('r1', { wait: 0 }, data)}\n`);
    const run = await runCli(['--home', home, 'run', jobs, '--execute'], { env: { CAAS_ANALYSES: repo.dir } });
    expect(run.code).toBe(0);

    const log: string[] = [];
    const watcher = await SubmissionWatcher.open({
      bucket: 'mock-wait',
      home,
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 2,
      leaseMs: 20_000,
      allowDirty: false,
      statusIntervalMs: 200,
      retryMs: 200,
      roots: [repo.dir],
      log: (line: string) => log.push(line),
    });
    try {
      const outcomes = await watcher.pollOnce();
      expect(outcomes.map((o) => o.outcome)).toEqual(['done']);
    } finally {
      await watcher.close();
    }
    expect(log).toEqual([]);
    const submissions = path.join(home, 'buckets', 'mock-wait', 'caas', 'submissions');
    expect(readdirSync(submissions).filter((f) => f.endsWith('.rejected.txt'))).toEqual([]);
    const results = path.join(home, 'buckets', 'mock-wait', 'caas', 'results');
    const [folder] = readdirSync(results);
    expect(readFileSync(path.join(results, folder!, 'process_results', 'end.txt'), 'utf8')).toMatch(/^SUCCESS/);
    expect(JSON.parse(readFileSync(path.join(results, folder!, 'logs', 'submission.json'), 'utf8')).written_by).toBe('caas run');
    expect(existsSync(path.join(results, folder!, 'process_results', 'caas-link.json'))).toBe(false);
  });
});

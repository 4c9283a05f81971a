import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusFile } from '../../models/status.ts';
import { agentOf } from '../support/processes.ts';
import { AnalysisRepo, ROOT, readRecords, removeDir, scratchDir } from '../support/workspace.ts';

const MB = 1024 * 1024;
const LIMIT_MB = 8;
const PRINTED = 3_000_000_000;

/** Prints 3 GB to stdout (and a little to stderr), then writes its result. */
const VERBOSE = `#!/usr/bin/env bash
set -eu
echo "first line of stdout"
echo "some stderr" >&2
yes "a verbose analysis prints this line again and again and again" | head -c ${PRINTED - 42}
echo
echo "last line of stdout"
echo '{}' > "$CAAS_OUTPUT_DIR/done.json"
`;

/** Bytes of every file under a folder (0 when it is gone). */
function folderBytes(dir: string): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    try {
      total += entry.isDirectory() ? folderBytes(full) : statSync(full).size;
    } catch {}
  }
  return total;
}

function rssMb(pid: number): number {
  try {
    const kb = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return kb ? Number(kb) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** An analysis that prints without end fills neither the disk nor the agent's memory, and loses neither end of its log. */
describe('a verbose analysis', () => {
  let base: string;
  let repo: AnalysisRepo;
  const tag = randomBytes(8).toString('hex');

  beforeAll(() => {
    base = scratchDir('verbose');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('verbose', VERBOSE, { log_limit_mb: LIMIT_MB, environment: { set: { CAAS_TEST_TAG: tag } } });
    mkdirSync(path.join(base, 'data'), { recursive: true });
    writeFileSync(path.join(base, 'data', 'in.txt'), 'x\n');
  });
  afterAll(() => removeDir(base));

  it('printing 3 GB: temporary files stay within a few times the log limit, the agent under 200 MB, the logs keep head and tail and say what was cut, end.txt is written last', {
    timeout: 600_000,
  }, async () => {
    const home = path.join(base, 'home');
    const tmp = path.join(base, 'tmp');
    mkdirSync(tmp, { recursive: true });
    const jobs = path.join(base, 'jobs.jsonl');
    writeFileSync(
      jobs,
      `${JSON.stringify({
        analysis: 'verbose',
        inputs: [{ asset_id: 'v', name: 'v', location: `file://${base}/data/`, files: [{ url: `file://${base}/data/in.txt` }] }],
      })}\n`,
    );
    const runner = spawn(process.execPath, [path.join(ROOT, 'bin/caas.js'), '--home', home, 'run', jobs, '--execute'], {
      env: { ...process.env, NO_COLOR: '1', CAAS_ANALYSES: repo.dir, CAAS_STATUS_INTERVAL_MS: '500', TMPDIR: tmp },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    runner.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => runner.once('close', resolve));
    let done = false;
    void exited.then(() => {
      done = true;
    });

    // While it runs: caas's temporary files (the job folder, the file store's staging area) and the agent's memory.
    let maxTempBytes = 0;
    let maxAgentMb = 0;
    let agent: number | undefined;
    while (!done) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      maxTempBytes = Math.max(maxTempBytes, folderBytes(tmp) + folderBytes(path.join(home, 'buckets', '.caas-tmp')));
      agent ??= agentOf('CAAS_TEST_TAG', tag);
      if (agent !== undefined) maxAgentMb = Math.max(maxAgentMb, rssMb(agent));
    }
    const code = await exited;
    const [record] = await readRecords(home);
    expect(code, `${stderr}\n${record?.reason}`).toBe(0);
    expect(agent).toBeDefined();
    expect(maxAgentMb).toBeGreaterThan(0);
    expect(maxAgentMb).toBeLessThan(200);
    // Log files of up to 1.5x the limit each, a snapshot of each, the store's copy while uploading.
    expect(maxTempBytes).toBeLessThan(6 * LIMIT_MB * MB);

    expect(record?.status).toBe('succeeded');
    const folder = path.join(home, 'buckets', record!.job!.logs.replace(/^file:\/\//, ''), '..');
    const stdout = readFileSync(path.join(folder, 'logs', 'stdout.txt'), 'utf8');
    expect(Buffer.byteLength(stdout)).toBeLessThan(LIMIT_MB * MB + 1000);
    expect(stdout.startsWith('first line of stdout\n')).toBe(true);
    expect(stdout.trimEnd().endsWith('last line of stdout')).toBe(true);
    expect(stdout).toMatch(/\[caas: \d+ bytes cut here\. The log was 3000000000 bytes; it keeps the first \d+ and the last \d+/);
    expect(readFileSync(path.join(folder, 'logs', 'stderr.txt'), 'utf8')).toBe('some stderr\n');
    const statusFile = readdirSync(path.join(folder, 'logs')).find((name) => name.endsWith('_STATUS.json'))!;
    const status = StatusFile.parse(JSON.parse(readFileSync(path.join(folder, 'logs', statusFile), 'utf8')));
    expect(status.logs_cut?.stdout).toMatchObject({ written_bytes: PRINTED, kept_bytes: LIMIT_MB * MB });
    expect(status.logs_cut?.stderr).toBeUndefined();
    expect(readFileSync(path.join(folder, 'logs', 'certificate.txt'), 'utf8')).toMatch(
      /stdout\.txt: the analysis wrote 3000000000 bytes.*cut \d+ bytes/,
    );

    // end.txt is the newest object of the job folder, and nothing changed after it.
    const objects: { key: string; mtime: number }[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else objects.push({ key: path.relative(folder, full), mtime: statSync(full).mtimeMs });
      }
    };
    walk(folder);
    // File times have the kernel clock's tick as their grain, so end.txt may share its time with what came
    // just before it; nothing may be newer, then or two seconds later.
    const end = objects.find((object) => object.key === path.join('process_results', 'end.txt'));
    expect(end).toBeDefined();
    for (const object of objects) expect(object.mtime, object.key).toBeLessThanOrEqual(end!.mtime);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    for (const object of objects) expect(statSync(path.join(folder, object.key)).mtimeMs, object.key).toBeLessThanOrEqual(end!.mtime);
    expect(readdirSync(tmp).filter((name) => name.startsWith('caas-job-'))).toEqual([]);
  });
});

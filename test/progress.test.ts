import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { AnalysisRepo, ROOT, removeDir, scratchDir } from './support/workspace.ts';

/** The progress a real `caas run --execute` prints; the rendering itself is in unit/progress.test.ts. */
const ESC = `${String.fromCharCode(27)}[`;

describe('caas run --execute off a terminal', () => {
  const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
  // Inside the project tree (git-ignored), so the copied analysis resolves zod and caas/analysis.
  const base = path.join(root, '.test-tmp', `progress-${randomBytes(4).toString('hex')}`);

  afterEach(() => {
    rmSync(base, { recursive: true, force: true });
  });

  it('prints periodic progress lines on stderr and a summary table; --quiet keeps only failures and the counts', () => {
    const repo = new AnalysisRepo(base).dir;
    mkdirSync(path.join(base, 'data'));
    // An asset folder holds data: an empty one is INVALID.
    writeFileSync(path.join(base, 'data', 'session.json'), '{}\n');
    const job = (asset: string, parameters: Record<string, unknown>) =>
      JSON.stringify({ analysis: 'mock-wait', inputs: [{ asset_id: asset, name: asset, location: `file://${base}/data/` }], parameters });
    writeFileSync(path.join(base, 'a.jsonl'), `${job('a1', { wait: 1 })}\n${job('a2', { wait: 0, fail: true })}\n`);
    writeFileSync(path.join(base, 'b.jsonl'), `${job('b1', { wait: 0 })}\n${job('b2', { wait: 0, fail: true })}\n`);
    const run = (file: string, ...flags: string[]) =>
      spawnSync(process.execPath, [path.join(root, 'bin/caas.js'), '--home', path.join(base, 'home'), 'run', file, '--execute', ...flags], {
        cwd: base,
        encoding: 'utf8',
        env: { ...process.env, CAAS_ANALYSES: repo, CAAS_PROGRESS_INTERVAL_MS: '250', NO_COLOR: '' },
      });

    const loud = run('a.jsonl');
    expect(loud.status, loud.stderr).toBe(1);
    expect(loud.stderr).toMatch(
      /^progress: \d\/2 done, \d succeeded, \d failed, \d running, 0 skipped, 0 running elsewhere, elapsed \d+s/m,
    );
    // Not a terminal: no bar, no colour.
    expect(loud.stderr + loud.stdout).not.toContain(ESC);
    expect(loud.stdout).toMatch(/^ACTION\s+IDENTITY/m);
    expect(loud.stdout).toMatch(
      /^ANALYSIS\s+TO RUN\s+SUCCEEDED\s+FAILED\s+SKIPPED\s+ELSEWHERE\s+INVALID\nmock-wait\s+2\s+1\s+1\s+0\s+0\s+0$/m,
    );

    const quiet = run('b.jsonl', '--quiet');
    expect(quiet.status, quiet.stderr).toBe(1);
    expect(quiet.stderr).toBe('');
    expect(quiet.stdout.split('\n').filter(Boolean)).toEqual([
      expect.stringMatching(/^FAILED\s+\w{12} attempt 1 .* b\.jsonl:2 .*\(exit code 3\)$/),
      'plan: 2 to run, 0 skipped, 0 running elsewhere, 0 invalid',
      'done: 1 succeeded, 1 failed, 0 taken by other runners, 0 lost',
    ]);
  });
});

describe('caas run --execute in a real terminal', () => {
  let base: string;
  afterEach(() => {
    if (base) removeDir(base);
  });

  /** Runs a command in a detached tmux pane of the given size until it prints its exit marker; returns the screen and scrollback. */
  function inTmux(columns: number, command: string): string {
    // A server of our own, its socket in the scratch folder, so the user's tmux sessions are never touched.
    const socket = path.join(base, 'tmux.sock');
    const tmux = (...args: string[]) => execFileSync('tmux', ['-S', socket, '-f', '/dev/null', ...args], { encoding: 'utf8' });
    tmux('new-session', '-d', '-x', String(columns), '-y', '24', '-s', 'run', `${command}; echo "[exit $?]"; sleep 600`);
    try {
      // A loaded machine only makes this take longer; the deadline is a hang guard, not a measure.
      const deadline = Date.now() + 150_000;
      for (;;) {
        const screen = tmux('capture-pane', '-p', '-t', 'run', '-S', '-');
        if (/^\[exit \d+\]$/m.test(screen) || Date.now() > deadline) return screen;
        spawnSync('sleep', ['0.2']);
      }
    } finally {
      tmux('kill-server');
    }
  }

  it.each([80, 60])('shows the ETA and the elsewhere count at %i columns', { timeout: 180_000 }, (columns) => {
    base = scratchDir(`progress-tty-${columns}`);
    const repo = new AnalysisRepo(base).dir;
    mkdirSync(path.join(base, 'data'));
    // An asset folder holds data: an empty one is INVALID.
    writeFileSync(path.join(base, 'data', 'session.json'), '{}\n');
    const job = (asset: string, parameters: Record<string, unknown>) =>
      JSON.stringify({ analysis: 'mock-wait', inputs: [{ asset_id: asset, name: asset, location: `file://${base}/data/` }], parameters });
    writeFileSync(
      path.join(base, 'jobs.jsonl'),
      `${job('a1', { wait: 1 })}\n${job('a2', { wait: 1, fail: true })}\n${job('a3', { wait: 0 })}\n`,
    );
    // Colour on (no NO_COLOR): its escape codes must not push the ETA off the line either.
    const screen = inTmux(
      columns,
      `cd '${base}' && env -u NO_COLOR CAAS_ANALYSES='${repo}' '${process.execPath}' '${path.join(ROOT, 'bin/caas.js')}' --home '${base}/home' run jobs.jsonl --execute`,
    );
    expect(screen).toMatch(/^\[exit 1\]$/m);
    const frames = screen.split('\n').filter((line) => / \| ETA /.test(line));
    expect(frames.length, screen).toBeGreaterThan(0);
    for (const frame of frames) {
      expect(frame.trimEnd().length).toBeLessThan(columns);
      expect(frame).toMatch(/\d\/3 .*\| elsewhere 0 \| ETA (\d+s|-)\s*$/);
    }
    // The last frame stays on screen above the summary.
    expect(screen).toMatch(/3\/3 .*\| failed 1 .*\| elsewhere 0 \| ETA 0s\s*\n/);
  });
});

import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/workspace.ts';

/**
 * The library example runs as a user's program would: in a folder of its own outside the caas
 * tree, with caas installed under node_modules (a link to this checkout, as `npm install <path>`
 * makes), importing 'caas' by its package name.
 */
describe('caas as a library', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'caas-library-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('examples/library.ts dispatches, plans, runs and queries', { timeout: 180_000 }, () => {
    // A user's project: an ES module package that depends on caas.
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ type: 'module', dependencies: { caas: `file:${ROOT}` } }));
    mkdirSync(path.join(dir, 'node_modules'));
    symlinkSync(ROOT, path.join(dir, 'node_modules', 'caas'), 'dir');
    copyFileSync(path.join(ROOT, 'examples', 'library.ts'), path.join(dir, 'library.ts'));
    const home = path.join(dir, 'workspace');
    const tsx = import.meta.resolve('tsx');
    const first = spawnSync(process.execPath, ['--import', tsx, 'library.ts', home], { cwd: dir, encoding: 'utf8' });
    expect(first.status, first.stderr).toBe(0);
    const lines = first.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^sample data: \d+ assets in bucket /);
    const jobs = Number(/^dispatched (\d+) jobs/.exec(lines[1]!)?.[1]);
    expect(jobs).toBeGreaterThan(0);
    expect(lines[2]).toBe(`plan: ${jobs} to run, 0 skipped`);
    expect(lines[3]).toBe(`ran: ${Array(jobs).fill('succeeded').join(', ')}`);
    expect(lines.slice(4).filter((l) => / succeeded /.test(l))).toHaveLength(jobs);

    // The gate holds for library callers too: the same jobs again run nothing.
    const second = spawnSync(process.execPath, ['--import', tsx, 'library.ts', home], { cwd: dir, encoding: 'utf8' });
    expect(second.status, second.stderr).toBe(0);
    expect(second.stdout).toContain(`plan: 0 to run, ${jobs} skipped`);
    expect(second.stdout).toContain('ran: \n');
  });
});

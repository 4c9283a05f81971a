import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BUNDLE_CACHE, bundledEntry } from '../backends/bundled-entry.mjs';
import { ROOT, removeDir, scratchDir } from './support/workspace.ts';

const VERSION = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('caas starts from a bundle of its sources, kept current', () => {
  const dir = scratchDir('bundle');
  const name = `test-${path.basename(dir)}`;
  afterAll(() => {
    removeDir(dir);
    for (const entry of readdirSync(BUNDLE_CACHE))
      if (entry.startsWith(name)) rmSync(path.join(BUNDLE_CACHE, entry), { recursive: true, force: true });
  });

  it('the CLI and the agent each have a bundle that runs (no silent fallback to tsx)', async () => {
    const cli = await bundledEntry(path.join(ROOT, 'cli/main.ts'), 'cli');
    expect(cli?.startsWith(BUNDLE_CACHE)).toBe(true);
    expect(execFileSync(process.execPath, [cli!, '--version'], { encoding: 'utf8' }).trim()).toBe(VERSION);
    const agent = await bundledEntry(path.join(ROOT, 'wrapper/agent-main.ts'), 'agent');
    expect(agent?.startsWith(BUNDLE_CACHE)).toBe(true);
    // With no spec the agent says what it needs and exits 2: it loaded.
    let stderr = '';
    try {
      execFileSync(process.execPath, [agent!], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH } });
    } catch (error) {
      stderr = String((error as { stderr: string }).stderr);
    }
    expect(stderr).toMatch(/caas agent: set CAAS_AGENT_SPEC/);
    // bin/caas.js says so under CAAS_DEBUG when it has to start from the sources.
    const run = spawnSync(process.execPath, [path.join(ROOT, 'bin/caas.js'), '--version'], {
      encoding: 'utf8',
      env: { ...process.env, CAAS_DEBUG: '1' },
    });
    expect(run.stdout.trim()).toBe(VERSION);
    expect(run.stderr).not.toMatch(/no bundle/);
  });

  it('is built again when a file it was built from changes, and each module keeps its own import.meta.url', async () => {
    const entry = path.join(dir, 'entry.ts');
    const dep = path.join(dir, 'dep.ts');
    writeFileSync(
      entry,
      "import { said, where } from './dep.ts';\nconsole.log(JSON.stringify({ said, where, text: 'import.meta.url stays text' }));\n",
    );
    writeFileSync(dep, "export const said: string = 'one';\nexport const where = import.meta.url;\n");
    // Written a while ago: a file written in the last seconds before a build is bundled again at the next start.
    const past = new Date(Date.now() - 60_000);
    for (const file of [entry, dep]) utimesSync(file, past, past);
    const first = await bundledEntry(entry, name);
    expect(first).toBeDefined();
    const out = (file: string) => JSON.parse(execFileSync(process.execPath, [file], { encoding: 'utf8' })) as Record<string, string>;
    expect(out(first!)).toEqual({ said: 'one', where: pathToFileURL(dep).href, text: 'import.meta.url stays text' });

    // Unchanged sources: the same bundle, not built again (a build rewrites the entry's record).
    const pointer = () =>
      statSync(path.join(BUNDLE_CACHE, `${name}-${createHash('sha256').update(entry).digest('hex').slice(0, 12)}.json`)).mtimeMs;
    const built = pointer();
    expect(await bundledEntry(entry, name)).toBe(first);
    expect(pointer()).toBe(built);

    // Another checkout sharing this node_modules (a worktree) has its own bundle of the same name.
    const other = path.join(dir, 'other');
    mkdirSync(other);
    writeFileSync(path.join(other, 'entry.ts'), "console.log(JSON.stringify({ said: 'other' }));\n");
    const otherBundle = await bundledEntry(path.join(other, 'entry.ts'), name);
    expect(out(otherBundle!).said).toBe('other');
    expect(await bundledEntry(entry, name)).toBe(first);
    expect(pointer()).toBe(built);

    writeFileSync(dep, "export const said: string = 'two!';\nexport const where = import.meta.url;\n");
    const second = await bundledEntry(entry, name);
    expect(second).not.toBe(first);
    expect(out(second!).said).toBe('two!');
  });
});

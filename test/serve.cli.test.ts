import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenHash } from '../server/tokens.ts';
import { startServer } from './support/service.ts';
import { removeDir, runCli, scratchDir } from './support/workspace.ts';

describe('caas serve from the command line', () => {
  let home: string;
  beforeAll(() => {
    home = path.join(scratchDir('serve-cli'), 'home');
  });
  afterAll(() => removeDir(path.dirname(home)));

  it('token add prints the token once and keeps only its sha256, in a file only its owner reads; list shows no token', async () => {
    const added = await runCli(['--home', home, 'serve', 'token', 'add', '--group', 'lab-a', '--name', 'lab-a-laptop']);
    expect(added.code, added.stderr).toBe(0);
    const token = added.stdout.trim();
    expect(token).toMatch(/^caas_[A-Za-z0-9_-]{43}$/);
    expect(added.stderr).toContain(`lab-a:${tokenHash(token)}`);
    const file = path.join(home, 'tokens.json');
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(token);
    expect(JSON.parse(text).tokens).toEqual([expect.objectContaining({ name: 'lab-a-laptop', group: 'lab-a', sha256: tokenHash(token) })]);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const listed = await runCli(['--home', home, 'serve', 'token', 'list']);
    expect(listed.stdout).toMatch(/lab-a-laptop\s+lab-a\s+[0-9a-f]{12}/);
    expect(listed.stdout).not.toContain(token);
    expect((await runCli(['--home', home, 'serve', 'token', 'add'])).code).toBe(2);
    expect((await runCli(['--home', home, 'serve', 'token', 'remove', 'lab-a-laptop'])).code).toBe(0);
    expect(JSON.parse(readFileSync(file, 'utf8')).tokens).toEqual([]);
  });

  it('refuses to start with a tokens file named by --tokens or CAAS_TOKENS_FILE that does not exist (exit 2); the default one may be absent', async () => {
    const missing = path.join(path.dirname(home), 'no-such-tokens.json');
    const outcome = (args: string[], env: Record<string, string> = {}) =>
      startServer(['--home', home, 'serve', '--port', '0', ...args], env).then(
        (server) => {
          server.child.kill('SIGKILL');
          return `listening at ${server.url}`;
        },
        (error: Error) => error.message,
      );
    expect(await outcome(['--tokens', missing])).toMatch(
      /exited \(2\) before listening: .*no-such-tokens\.json: no such tokens file \(named by --tokens or CAAS_TOKENS_FILE\); make it with caas serve token add/s,
    );
    expect(await outcome([], { CAAS_TOKENS_FILE: missing })).toMatch(/exited \(2\) before listening: .*no such tokens file/s);
    expect(await outcome([])).toMatch(/^listening at http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('refuses a public --host without tokens (exit 2), naming what to do', async () => {
    const refused = await runCli(['--home', home, 'serve', '--host', '0.0.0.0', '--port', '0']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/--host 0\.0\.0\.0 .*caas serve token add --group/);
  });
});

import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { folderKeys } from '../wrapper/submission.ts';
import { AnalysisRepo, removeDir, runCli, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';

describe('a watcher over a folder bucket holding symbolic links and special files', () => {
  let base: string;
  let home: string;
  let repo: AnalysisRepo;
  const at = (...parts: string[]) => path.join(home, 'buckets', BUCKET, ...parts);
  const write = (key: string, body: unknown) => {
    mkdirSync(path.dirname(at(key)), { recursive: true });
    writeFileSync(at(key), typeof body === 'string' ? body : JSON.stringify(body));
  };
  const text = (key: string) => (existsSync(at(key)) ? readFileSync(at(key), 'utf8') : undefined);
  const watchOnce = () => runCli(['--home', home, 'watch', '--bucket', BUCKET, '--once'], { env: { CAAS_ANALYSES: repo.dir } });
  /** The first watcher's pass, made once by the first test that needs it (so each test also runs alone with -t). */
  let firstPass: ReturnType<typeof watchOnce> | undefined;
  const firstWatch = () => (firstPass ??= watchOnce());

  beforeAll(() => {
    base = scratchDir('submission-links');
    home = path.join(base, 'home');
    repo = new AnalysisRepo(base);
    write('demo/inputs/d1.json', '{"name": "d1"}\n');
    write('demo/configs/ok.json', '{"wait": 0}\n');
    write('caas/inputs/secret.json', '{"secret": "of group caas"}\n');
    write('caas/configs/secret.json', '{"wait": 0}\n');
    symlinkSync('../../caas/inputs/secret.json', at('demo/inputs/link.json'));
    symlinkSync('../../caas/configs/secret.json', at('demo/configs/linked.json'));
    symlinkSync('/etc', at('demo/inputs/etcdir'));
    symlinkSync('loop', at('demo/inputs/loop'));
    symlinkSync('nowhere.json', at('demo/inputs/gone.json'));
    symlinkSync('/etc', at('caas/etcdir'));
    const submit = (ts: string, dataname: string, configname = 'configs/ok.json') =>
      write(`demo/submissions/${ts}_submit.json`, { dataname, configname, timestamp: ts });
    submit('ok', 'inputs/d1.json');
    submit('link', 'inputs/link.json');
    submit('cfg', 'inputs/d1.json', 'configs/linked.json');
    submit('etc', 'inputs/etcdir/');
  });
  afterAll(() => removeDir(base));

  it('answers every submission: links out of the group are refused, the rest runs, and each bad entry is warned about once', async () => {
    const first = await firstWatch();
    expect(first.code, first.stdout + first.stderr).toBe(0);
    expect(first.stdout).toMatch(/processed 4 submit file\(s\)\n/);
    const end = (ts: string) => text(folderKeys(BUCKET, 'demo', ts).end);
    expect(end('ok')).toMatch(/^SUCCESS\n/);
    expect(end('link')).toBe(
      'REJECTED\ndataname "inputs/link.json": demo/inputs/link.json in bucket mock-wait is reached through a symbolic link that leads out of demo/: refused\n',
    );
    expect(end('cfg')).toBe(
      'REJECTED\nconfigname: demo/configs/linked.json in bucket mock-wait is reached through a symbolic link that leads out of demo/: refused\n',
    );
    expect(end('etc')).toMatch(/^REJECTED\ndataname "inputs\/etcdir\/": demo\/inputs\/etcdir\/ does not exist/);

    const warnings = first.stderr.split('\n').filter(Boolean);
    expect(
      warnings.every((line) => line.startsWith('caas: warning: mock-wait/')),
      first.stderr,
    ).toBe(true);
    for (const entry of ['demo/inputs/link.json ', 'demo/inputs/etcdir ', 'demo/inputs/loop ', 'demo/inputs/gone.json ', 'caas/etcdir ']) {
      expect(
        warnings.filter((line) => line.includes(`mock-wait/${entry}`)),
        entry,
      ).toHaveLength(1);
    }
    expect(first.stderr).not.toMatch(/EISDIR|at .*\.ts:\d+/);
  });

  it('a watcher started again finds every answer in place', async () => {
    await firstWatch();
    const again = await watchOnce();
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.stdout).toBe('processed 4 submit file(s)\n');
  });
});

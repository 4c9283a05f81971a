import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Launcher } from '../backends/compute/index.ts';
import type { ObjectStore } from '../backends/storage/index.ts';
import { folderKeys, rejectionNoteKey } from '../wrapper/submission.ts';
import { type SubmissionOutcome, SubmissionWatcher } from '../wrapper/watch.ts';
import { AnalysisRepo, removeDir, scratchDir } from './support/workspace.ts';

const BUCKET = 'mock-wait';

/** A launcher that only counts: any launch at all means a bad submission reached compute. */
function countingLauncher(): Launcher & { launches: number } {
  return {
    name: 'counting',
    launches: 0,
    async launch() {
      this.launches++;
      throw new Error('no analysis may run for a malformed submission');
    },
    async close() {},
  };
}

interface Case {
  name: string;
  /** Timestamp of the file name `{ts}_submit.json`; the folder the answer must land in unless `folder` says otherwise. */
  ts: string;
  group?: string;
  /** The submit file's bytes; an object is JSON-encoded with `timestamp: ts` added unless it has one. */
  body: string | Uint8Array | Record<string, unknown>;
  /** What the certificate line must say. */
  says: RegExp;
  /** The timestamp folder the answer goes to, when it is not `ts`. */
  folder?: string;
}

const ok = { dataname: 'inputs/d1.json', configname: 'configs/ok.json' };
let n = 0;
const t = () => `f${String(++n).padStart(3, '0')}`;
const c = (name: string, body: Case['body'], says: RegExp, extra: Partial<Case> = {}): Case => ({ name, ts: t(), body, says, ...extra });

const CASES: Case[] = [
  // Not JSON.
  c('truncated JSON', '{"dataname": "inputs/d1.json",', /not JSON/),
  c('plain text', 'please run my data', /not JSON/),
  c('empty file', '', /not JSON/),
  c('trailing comma', '{"dataname": "inputs/d1.json", "configname": "configs/ok.json",}', /not JSON/),
  c('binary bytes', new Uint8Array([0xff, 0xfe, 0x00, 0x7b, 0x01]), /not JSON/),
  c('larger than the submit limit', `{"pad": "${'x'.repeat(70 * 1024)}"}`, /not JSON \(larger than/),
  // Missing or mistyped fields.
  c('empty object', {}, /dataname/),
  c('no dataname', { configname: 'configs/ok.json' }, /dataname/),
  c('no configname', { dataname: 'inputs/d1.json' }, /configname/),
  c('no timestamp: answered in the file-name folder', { ...ok, timestamp: undefined }, /timestamp/),
  c('dataname is a number', { ...ok, dataname: 7 }, /dataname/),
  c('dataname is an empty list', { ...ok, dataname: [] }, /dataname/),
  c('dataname is an empty string', { ...ok, dataname: '' }, /dataname/),
  c('configname is a list', { ...ok, configname: ['configs/ok.json'] }, /configname/),
  c('timestamp is a number', { ...ok, timestamp: 1700000000 }, /timestamp/),
  c('timestamp climbs out of results/', { ...ok, timestamp: '../../demo/configs' }, /timestamp/),
  c('timestamp with a slash', { ...ok, timestamp: 'a/b' }, /timestamp/),
  c('unknown field', { ...ok, priority: 'high' }, /priority|[Uu]nrecognized/),
  c(
    '__proto__ field',
    `{"dataname":"inputs/d1.json","configname":"configs/ok.json","__proto__":{"admin":true}}`,
    /__proto__|[Uu]nrecognized/,
  ),
  c('JSON null', 'null', /expected object|received null/),
  c('JSON array', '[]', /expected object|received array/),
  c('JSON string', '"inputs/d1.json"', /expected object|received string/),
  // Names that do not exist.
  c('dataname missing', { ...ok, dataname: 'inputs/nope.json' }, /demo\/inputs\/nope\.json does not exist/),
  c('configname missing', { ...ok, configname: 'configs/nope.json' }, /demo\/configs\/nope\.json does not exist/),
  c('empty data folder', { ...ok, dataname: 'inputs/empty-folder/' }, /does not exist/),
  c('one of several datanames missing', { ...ok, dataname: ['inputs/d1.json', 'inputs/nope.json'] }, /nope\.json does not exist/),
  // Paths outside the group's inputs/ and configs/.
  c('dataname climbs with ..', { ...ok, dataname: '../other/inputs/x.json' }, /"\.\." is not allowed/),
  c('dataname climbs inside inputs/', { ...ok, dataname: 'inputs/../../other/inputs/x.json' }, /"\.\." is not allowed/),
  c('dataname absolute path', { ...ok, dataname: '/etc/passwd' }, /absolute paths/),
  c('dataname home path', { ...ok, dataname: '~/data.json' }, /absolute paths/),
  c('dataname of another group', { ...ok, dataname: 'other/inputs/x.json' }, /another group/),
  c('dataname percent-encoded ..', { ...ok, dataname: '%2e%2e/other/inputs/x.json' }, /"\.\." is not allowed/),
  c(
    'dataname percent-encoded slash and ..',
    { ...ok, dataname: 'inputs%2f%2e%2e%2f%2e%2e%2fother%2finputs%2fx.json' },
    /"\.\." is not allowed/,
  ),
  c('dataname double-encoded', { ...ok, dataname: '%252e%252e/other/inputs/x.json' }, /still percent-encoded/),
  c('dataname overlong UTF-8 dot', { ...ok, dataname: '%c0%ae%c0%ae/other/inputs/x.json' }, /broken percent-encoding/),
  c('dataname with backslashes', { ...ok, dataname: 'inputs\\..\\..\\other\\inputs\\x.json' }, /backslashes/),
  c('dataname with NUL', { ...ok, dataname: 'inputs/d1.json\u0000.txt' }, /control characters/),
  c('dataname with encoded NUL', { ...ok, dataname: 'inputs/d1.json%00' }, /control characters/),
  c('dataname with a newline', { ...ok, dataname: 'inputs/d1.json\nconfigs/ok.json' }, /control characters/),
  c('dataname forging a certificate line', { ...ok, dataname: 'x\n2030-01-01T00:00:00Z job succeeded' }, /control characters/),
  c('unknown field forging a line', `{"dataname":"inputs/d1.json","configname":"configs/ok.json","a\\nb":1}`, /[Uu]nrecognized/),
  c('dataname s3:// another bucket', { ...ok, dataname: 's3://unit-filter/demo/inputs/d1.json' }, /names bucket "unit-filter"/),
  c(
    'dataname s3:// this bucket, other group',
    { ...ok, dataname: 's3://mock-wait/other/inputs/x.json' },
    /must name something inside demo\/inputs\//,
  ),
  c(
    'dataname s3:// this bucket, climbing',
    { ...ok, dataname: 's3://mock-wait/demo/inputs/../../other/inputs/x.json' },
    /"\.\." is not allowed/,
  ),
  c('dataname file:///', { ...ok, dataname: 'file:///etc/passwd' }, /names bucket ""/),
  c('dataname https://', { ...ok, dataname: 'https://example.org/x.json' }, /only s3:\/\//),
  c('dataname data: URI', { ...ok, dataname: 'data:application/json,{}' }, /only s3:\/\//),
  c('dataname is the group folder', { ...ok, dataname: 'inputs/' }, /must name something inside/),
  c('dataname with a . segment', { ...ok, dataname: 'inputs/./d1.json' }, /"\." path segments/),
  c('dataname with an empty segment', { ...ok, dataname: 'inputs//d1.json' }, /empty or "\." path segments/),
  c('dataname in configs/', { ...ok, dataname: 'demo/configs/ok.json' }, /outside demo\/inputs\//),
  c('one dataname of a list climbs', { ...ok, dataname: ['inputs/d1.json', '../other/inputs/x.json'] }, /"\.\." is not allowed/),
  c('configname climbs', { ...ok, configname: '../other/configs/ok.json' }, /"\.\." is not allowed/),
  c('configname absolute', { ...ok, configname: '/work/secrets.json' }, /absolute paths/),
  c('configname of another group', { ...ok, configname: 'other/configs/ok.json' }, /another group/),
  c('configname in inputs/', { ...ok, configname: 'demo/inputs/d1.json' }, /outside demo\/configs\//),
  c('configname encoded ..', { ...ok, configname: 'configs/%2E%2E/%2E%2E/other/configs/ok.json' }, /"\.\." is not allowed/),
  c('configname s3:// another bucket', { ...ok, configname: 's3://evil-bucket/demo/configs/ok.json' }, /names bucket "evil-bucket"/),
  c('configname is a folder', { ...ok, configname: 'configs/sub/' }, /not a folder/),
  // Configs that fail the parameter model: the message names the field and what it expects.
  c('config field of the wrong type', { ...ok, configname: 'configs/wait-string.json' }, /wait: .*expected number/),
  c('config value out of range', { ...ok, configname: 'configs/wait-negative.json' }, /wait: .*>=0/),
  c('config with an unknown field', { ...ok, configname: 'configs/unknown.json' }, /speed|[Uu]nrecognized/),
  c('config boolean as string', { ...ok, configname: 'configs/fail-string.json' }, /fail: .*expected boolean/),
  c('config not JSON', { ...ok, configname: 'configs/broken.json' }, /configs\/broken\.json is not JSON/),
  c('config is a list', { ...ok, configname: 'configs/list.json' }, /must be a JSON object/),
  // Groups the blueprint does not list.
  c('group not in the blueprint', { dataname: 'inputs/x.json', configname: 'configs/ok.json' }, /group "other" may not use mock-wait/, {
    group: 'other',
  }),
  c('group not in the blueprint, not even JSON', 'nonsense', /group "intruder" may not use/, { group: 'intruder' }),
  c('group differs only by case', { ...ok }, /group "Demo" may not use/, { group: 'Demo' }),
  // Instance types.
  c('instance type not allowed', { ...ok, instance_type: 'p4d.24xlarge' }, /instance_type "p4d\.24xlarge" is not allowed.*t3\.micro/),
  c('instance type in the wrong case', { ...ok, instance_type: 'T3.MICRO' }, /instance_type "T3\.MICRO" is not allowed/),
  c('instance type empty', { ...ok, instance_type: '' }, /instance_type "" is not allowed/),
  c('instance type mistyped', { ...ok, instance_type: 2 }, /instance_type/),
  // Several datasets whose status files would collide.
  c('two datanames with one file name', { ...ok, dataname: ['inputs/d1.json', 'inputs/sess/d1.json'] }, /share the file name d1\.json/),
];

describe('malformed and malicious submit files', () => {
  let base: string;
  let watcher: SubmissionWatcher;
  let store: ObjectStore;
  let launcher: ReturnType<typeof countingLauncher>;
  let outcomes: SubmissionOutcome[];
  const log: string[] = [];
  const text = async (key: string) => (await store.get(BUCKET, key).catch(() => undefined))?.toString('utf8');

  // The timestamp-reuse cases, set up before the watcher looks.
  const reused = { byOther: 'u001', noMarker: 'u002', rewritten: 'u003', raceA: 'u004', raceB: 'u005' };

  beforeAll(async () => {
    base = scratchDir('submission-fuzz');
    const repo = new AnalysisRepo(base);
    launcher = countingLauncher();
    watcher = await SubmissionWatcher.open({
      bucket: BUCKET,
      home: path.join(base, 'home'),
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 8,
      leaseMs: 30_000,
      allowDirty: false,
      roots: [repo.dir],
      launcher,
      log: (line) => log.push(line),
    });
    store = watcher.store;
    const put = (key: string, body: string | Uint8Array) => store.put(BUCKET, key, body);
    await put('demo/inputs/d1.json', '{"units": []}\n');
    await put('demo/inputs/sess/d1.json', '{"units": [1]}\n');
    await put('demo/inputs/empty-folder-not-this/x.json', '{}\n');
    await put('demo/configs/ok.json', '{"wait": 0}\n');
    await put('demo/configs/sub/x.json', '{"wait": 0}\n');
    await put('demo/configs/wait-string.json', '{"wait": "soon"}\n');
    await put('demo/configs/wait-negative.json', '{"wait": -1}\n');
    await put('demo/configs/unknown.json', '{"wait": 0, "speed": 11}\n');
    await put('demo/configs/fail-string.json', '{"fail": "yes"}\n');
    await put('demo/configs/broken.json', '{"wait": \n');
    await put('demo/configs/list.json', '[{"wait": 0}]\n');
    await put('other/inputs/x.json', '{}\n');
    await put('other/configs/ok.json', '{"wait": 0}\n');

    for (const k of CASES) {
      const group = k.group ?? 'demo';
      let body = k.body;
      if (typeof body === 'object' && !(body instanceof Uint8Array)) {
        body = JSON.stringify('timestamp' in body ? body : { ...body, timestamp: k.ts });
      }
      await put(`${group}/submissions/${k.ts}_submit.json`, body);
    }

    // A folder claimed by another submit file; one holding a job without any marker (caas run's,
    // or written before the watcher); a folder whose own submit file was changed after it was answered.
    const marker = (submitKey: string, sha: string) =>
      JSON.stringify({ submit_key: submitKey, submit_sha256: sha, owner: { host: 'h', pid: 1, run: 'r' }, claimed: '', lease_expires: '' });
    await put(folderKeys(BUCKET, 'demo', reused.byOther).marker, marker('demo/submissions/first_submit.json', 'x'));
    await put(`${folderKeys(BUCKET, 'demo', reused.byOther).process}end.txt`, 'SUCCESS\n');
    await put(`${folderKeys(BUCKET, 'demo', reused.noMarker).logs}certificate.txt`, 'an earlier job\n');
    await put(folderKeys(BUCKET, 'demo', reused.rewritten).marker, marker(`demo/submissions/${reused.rewritten}_submit.json`, 'old'));
    await put(`${folderKeys(BUCKET, 'demo', reused.rewritten).process}end.txt`, 'REJECTED\nold\n');
    for (const ts of [reused.byOther, reused.noMarker, reused.rewritten]) {
      await put(`demo/submissions/${ts}_submit.json`, JSON.stringify({ ...ok, timestamp: ts }));
    }
    // Two new submit files naming one timestamp (both invalid, so whichever wins runs nothing).
    await put(
      `demo/submissions/${reused.raceA}_submit.json`,
      JSON.stringify({ ...ok, configname: 'configs/nope.json', timestamp: 'shared' }),
    );
    await put(
      `demo/submissions/${reused.raceB}_submit.json`,
      JSON.stringify({ ...ok, configname: 'configs/nope.json', timestamp: 'shared' }),
    );
    // A folder name above submissions/ that cannot be a group: answered nowhere.
    await put('-x/submissions/z_submit.json', '{}');

    outcomes = await watcher.pollOnce();
  });
  afterAll(async () => {
    await watcher?.close();
    removeDir(base);
  });

  it('covers at least 50 cases across every class', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(50);
  });

  it.each(CASES)('$name: a certificate line says why, end.txt is written, nothing runs', async (k) => {
    const folder = folderKeys(BUCKET, k.group ?? 'demo', k.folder ?? k.ts);
    const certificate = await text(folder.certificate);
    expect(certificate, `no certificate in ${folder.prefix}`).toBeDefined();
    expect(certificate).toMatch(/caas watcher: submission .* rejected: /);
    expect(certificate?.trimEnd().split('\n'), 'one line, however the names are spelled').toHaveLength(1);
    expect(certificate).toMatch(k.says);
    expect(await text(folder.end)).toMatch(/^REJECTED\n/);
    expect(outcomes.find((o) => o.key.endsWith(`/${k.ts}_submit.json`))?.outcome).toBe('rejected');
  });

  it('a timestamp already used by another submission: its folder is left alone, the watcher log and a note say why', async () => {
    const folder = folderKeys(BUCKET, 'demo', reused.byOther);
    expect(await text(folder.certificate)).toBeUndefined();
    expect(await text(folder.end)).toBe('SUCCESS\n');
    const key = `demo/submissions/${reused.byOther}_submit.json`;
    expect(await text(rejectionNoteKey(key))).toMatch(/already used by demo\/submissions\/first_submit\.json/);
    expect(log.join('\n')).toMatch(new RegExp(`${key}: conflict: timestamp ${reused.byOther} is already used`));
  });

  it('a timestamp whose folder holds a job without a marker is not written to', async () => {
    const folder = folderKeys(BUCKET, 'demo', reused.noMarker);
    expect(await text(folder.certificate)).toBe('an earlier job\n');
    expect(await text(folder.marker)).toBeUndefined();
    expect(await text(rejectionNoteKey(`demo/submissions/${reused.noMarker}_submit.json`))).toMatch(/already used by another job/);
  });

  it('a submit file changed after it was answered is not answered again in the same folder', async () => {
    const folder = folderKeys(BUCKET, 'demo', reused.rewritten);
    expect(await text(folder.end)).toBe('REJECTED\nold\n');
    expect(await text(rejectionNoteKey(`demo/submissions/${reused.rewritten}_submit.json`))).toMatch(/earlier version of this submit file/);
  });

  it('two new submit files with one timestamp: exactly one is answered in the folder, the other gets a note', async () => {
    const kinds = [reused.raceA, reused.raceB].map((ts) => outcomes.find((o) => o.key.endsWith(`/${ts}_submit.json`))?.outcome).sort();
    expect(kinds).toEqual(['conflict', 'rejected']);
    const certificate = await text(folderKeys(BUCKET, 'demo', 'shared').certificate);
    expect(certificate?.match(/rejected: /g)).toHaveLength(1);
  });

  it('a folder name that cannot be a group is answered nowhere', async () => {
    expect(outcomes.find((o) => o.key === '-x/submissions/z_submit.json')?.outcome).toBe('ignored');
    const written: string[] = [];
    for await (const info of store.list(BUCKET, '-x/')) written.push(info.key);
    expect(written).toEqual(['-x/submissions/z_submit.json']);
  });

  it('no analysis ran and no job was recorded', async () => {
    expect(launcher.launches).toBe(0);
    const records = [];
    for await (const record of watcher.db.find({})) records.push(record);
    expect(records).toEqual([]);
  });

  it('looking again answers nothing twice', async () => {
    expect(await watcher.pollOnce()).toEqual([]);
    const restarted = await SubmissionWatcher.open({
      bucket: BUCKET,
      home: path.join(base, 'home'),
      storeUrl: 'file:',
      dbUrl: 'sqlite:',
      compute: 'local',
      concurrency: 8,
      leaseMs: 30_000,
      allowDirty: false,
      roots: watcher.analysis.dir ? [path.dirname(watcher.analysis.dir)] : undefined,
      launcher,
      log: () => {},
    });
    try {
      const again = await restarted.pollOnce();
      const answered = again.filter((o) => o.outcome === 'rejected');
      expect(answered).toEqual([]);
      expect(again.filter((o) => o.outcome === 'done').length).toBe(CASES.length + 1);
    } finally {
      await restarted.close();
    }
  });
});

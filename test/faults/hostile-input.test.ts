import { cpSync, createWriteStream, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import BetterSqlite3 from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH } from '../../models/untrusted-json.ts';
import { MAX_ARRAY_BYTES, MAX_JOB_BYTES } from '../../wrapper/job-source.ts';
import { folderKeys } from '../../wrapper/submission.ts';
import { AnalysisRepo, ROOT, readRecords, removeDir, runCli, scratchDir, treeDigest } from '../support/workspace.ts';

/**
 * An analysis with a free-form parameter (`extra`, anything JSON), as real analyses have: the
 * hostile values below reach the identity only through such a field.
 */
const FREE_FORM = {
  'index.ts': `import { defineAnalysis } from 'caas/analysis';
import { z } from 'zod';
import blueprint from './blueprint.json' with { type: 'json' };

export default defineAnalysis({
  name: 'free-form',
  version: '1.0.0',
  description: 'mock-wait with a free-form parameter',
  parameters: z.object({ wait: z.number().min(0).default(0), fail: z.boolean().default(false), extra: z.unknown().optional() }).strict(),
  outputs: { file: 'waited.json', model: z.object({ waited_s: z.number() }) },
  command: ['bash', '\${analysis_dir}/run.sh'],
  blueprint,
});
`,
  'blueprint.json': JSON.stringify({
    bucket: 'free-form',
    ami: 'ami-0123456789abcdef0',
    instance_type: 't3.micro',
    max_runtime_minutes: 10,
    deploy_limit: 4,
    groups: [{ name: 'caas' }, { name: 'demo' }],
  }),
};

/** JSON text nested `depth` arrays deep, built as text: the test's own JSON.stringify would overflow its stack. */
const nested = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;

/** A YAML alias bomb: each anchor repeats the one before nine times, 9^6 strings from a few hundred bytes. */
const YAML_BOMB = ['a: &a [x, x, x, x, x, x, x, x, x]']
  .concat(['b', 'c', 'd', 'e', 'f'].map((name, i) => `${name}: &${name} [${Array(9).fill(`*${'abcde'[i]}`).join(', ')}]`))
  .join('\n');

// At load: the cases below are built with the data file's path.
const base = scratchDir('hostile-input');
const data = path.join(base, 'data', 'session.json');
let repo: AnalysisRepo;
const env = () => ({ CAAS_ANALYSES: repo.dir });
const caas = (home: string, args: string[], options: Parameters<typeof runCli>[1] = {}) =>
  runCli(['--home', home, ...args], { ...options, env: { ...env(), ...options.env } });

function job(id: string, parameters: unknown = {}, over: Record<string, unknown> = {}, input: Record<string, unknown> = {}): string {
  return JSON.stringify({
    analysis: 'free-form',
    inputs: [{ asset_id: id, name: id, location: `file://${path.dirname(data)}/`, files: [{ url: `file://${data}` }], ...input }],
    parameters,
    ...over,
  });
}

/** The same job with `"parameters":{}` replaced by raw JSON text. */
const withParameters = (id: string, text: string) => job(id).replace('"parameters":{}', `"parameters":${text}`);

interface PlanLine {
  type: string;
  action?: string;
  where?: string;
  reason?: string | null;
}
const jsonLines = (stdout: string): PlanLine[] =>
  stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as PlanLine);

beforeAll(() => {
  repo = new AnalysisRepo(base, ['mock-wait']);
  const dir = path.join(repo.dir, 'free-form');
  cpSync(path.join(ROOT, 'analyses', 'mock-wait'), dir, { recursive: true });
  for (const [name, text] of Object.entries(FREE_FORM)) writeFileSync(path.join(dir, name), text);
  repo.commit('free-form');
  mkdirSync(path.dirname(data), { recursive: true });
  writeFileSync(data, '{"units": []}\n');
});
afterAll(() => removeDir(base));

interface Hostile {
  name: string;
  line: string;
  /** The reason after `file:line: `: field path first, then what is expected. */
  says: RegExp;
}

const HOSTILE: Hostile[] = [
  {
    name: 'lone surrogate in a parameter',
    line: job('s1', { extra: 'a\ud800b' }),
    says: /^parameters\.extra: a lone surrogate \(\\ud800\)/,
  },
  {
    name: 'lone surrogate in a key',
    line: job('s2', { extra: { '\udc00': 1 } }),
    says: /^parameters\.extra\.\\udc00: .*lone surrogate.* in a key/,
  },
  {
    name: 'lone surrogate in group_metadata',
    line: job('s3', {}, { group_metadata: { lab: '\udbff' } }),
    says: /^group_metadata\.lab: a lone surrogate/,
  },
  { name: 'lone surrogate in a name', line: job('s4', {}, {}, { name: 'x\ud800' }), says: /^inputs\.0\.name: a lone surrogate/ },
  {
    name: 'a free-form parameter nested 3000 deep',
    line: withParameters('d1', `{"extra":${nested(3000)}}`),
    says: new RegExp(`^parameters\\.extra\\.0\\.0\\.0\\.0\\.0\\.0\\.…: objects and arrays nested more than ${MAX_JSON_DEPTH} levels deep`),
  },
  { name: 'nested 200000 deep', line: withParameters('d2', `{"extra":${nested(200_000)}}`), says: /nested more than 64 levels deep/ },
  {
    name: '__proto__ key in parameters',
    line: withParameters('p1', '{"__proto__":{"wait":5}}'),
    says: /^parameters\.__proto__: the key "__proto__" is not allowed/,
  },
  {
    name: 'constructor key deep in parameters',
    line: job('p2', { extra: { a: [{ constructor: 1 }] } }),
    says: /^parameters\.extra\.a\.0\.constructor: the key "constructor"/,
  },
  {
    name: 'prototype key in parameters',
    line: job('p3', { extra: { prototype: {} } }),
    says: /^parameters\.extra\.prototype: the key "prototype"/,
  },
  {
    name: '__proto__ key at the top of the job',
    line: job('p4').replace(/^\{/, '{"__proto__":{},'),
    says: /^__proto__: the key "__proto__"/,
  },
  { name: 'NUL in asset_id', line: job('n1\u0000x'), says: /^inputs\.0\.asset_id: no control characters/ },
  { name: 'newline in name', line: job('n2', {}, {}, { name: 'n2\nSUCCESS' }), says: /^inputs\.0\.name: no control characters/ },
  {
    name: 'control character in location',
    line: job('n3', {}, {}, { location: 'file:///tmp/\u0001/' }),
    says: /^inputs\.0\.location: no control characters/,
  },
  {
    name: 'DEL in files[].url',
    line: job('n4', {}, {}, { files: [{ url: 'file:///tmp/x\u007f' }] }),
    says: /^inputs\.0\.files\.0\.url: no control characters/,
  },
  {
    name: 'C1 control in instance_type',
    line: job('n5', {}, { instance_type: 't3.micro\u0085' }),
    says: /^instance_type: no control characters/,
  },
  { name: 'tab in group', line: job('n6', {}, { group: 'demo\t' }), says: /^group: a group name/ },
  { name: 'NUL in bucket', line: job('n7', {}, { bucket: 'free\u0000form' }), says: /^bucket: an S3 bucket name/ },
  { name: 'newline in analysis', line: job('n8', {}, { analysis: 'free-form\n' }), says: /^analysis: no control characters/ },
];

describe('caas run: each hostile line is INVALID where it is, the rest of the batch runs', () => {
  let file: string;
  let home: string;
  let run: Awaited<ReturnType<typeof runCli>>;
  let plan: PlanLine[];

  beforeAll(async () => {
    home = path.join(base, 'home-batch');
    file = path.join(base, 'hostile.jsonl');
    writeFileSync(file, `${[job('good-1'), ...HOSTILE.map((h) => h.line), job('good-2', { wait: 0.01 })].join('\n')}\n`);
    run = await caas(home, ['run', file, '--execute', '--compute', 'inline', '--json']);
    plan = jsonLines(run.stdout).filter((l) => l.type === 'plan');
  });

  it.each(HOSTILE.map((h, i) => ({ ...h, n: i + 2 })))('$name: INVALID at its file:line with the field path', ({ n, says }) => {
    const entry = plan.find((p) => p.where === `${file}:${n}`);
    expect(entry?.action).toBe('INVALID');
    expect(entry?.reason).toMatch(says);
  });

  it('runs the valid jobs around them and exits 2', async () => {
    expect(run.stderr).toBe('');
    expect(run.code).toBe(2);
    const summary = jsonLines(run.stdout).find((l) => l.type === 'summary') as unknown as {
      planned: Record<string, number>;
      results: Record<string, number>;
    };
    expect(summary.planned).toMatchObject({ RUN: 2, INVALID: HOSTILE.length });
    expect(summary.results.succeeded).toBe(2);
    expect((await readRecords(home)).map((r) => r.preimage.inputs[0]?.asset_id).sort()).toEqual(['good-1', 'good-2']);
  });

  it('a dry run says the same, in the table a person reads', async () => {
    const dry = await caas(path.join(base, 'home-dry'), ['run', file]);
    expect(dry.code).toBe(2);
    expect(dry.stdout).toMatch(
      new RegExp(`INVALID .* ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: parameters\\.extra: a lone surrogate`),
    );
    expect(dry.stdout).toMatch(new RegExp(`plan: 2 to run, 0 skipped, 0 running elsewhere, ${HOSTILE.length} invalid`));
    // One line per job: no control character a user wrote reaches the terminal raw.
    expect(dry.stdout.split('\n').filter((l) => l.startsWith('INVALID'))).toHaveLength(HOSTILE.length);
  });
});

describe('job sources: long lines, byte order marks, arrays', () => {
  const quoted = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it('a line over the limit is INVALID at its line, streamed past without being held; the lines after it run', async () => {
    const file = path.join(base, 'long-line.jsonl');
    const out = createWriteStream(file);
    out.write(`${job('long-1')}\n{"pad":"`);
    const mib = Buffer.alloc(1024 * 1024, 'x');
    for (let i = 0; i < MAX_JOB_BYTES / mib.length; i++) out.write(mib);
    out.write(`"}\n${job('long-2')}\n`);
    out.end();
    await finished(out);
    const lineBytes = MAX_JOB_BYTES + '{"pad":""}'.length;
    const run = await caas(path.join(base, 'home-long'), ['run', file]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(
      new RegExp(
        `INVALID .*${quoted(file)}:2: the line is ${lineBytes} bytes long: expected one job of at most ${MAX_JOB_BYTES} bytes \\(8 MiB\\) per line`,
      ),
    );
    expect(run.stdout.match(/^RUN /gm)).toHaveLength(2);
  });

  it("the reader's memory stays bounded by the line limit, however long the line (256 MiB through stdin)", async () => {
    const probe = (name: string) => path.join(base, `probe-${name}.json`);
    const nodeArgs = ['--import', path.join(ROOT, 'bench/rss-probe.mjs')];
    const small = await caas(path.join(base, 'home-mem'), ['run', '-'], {
      input: `${job('mem-1')}\n${job('mem-2')}\n`,
      nodeArgs,
      env: { CAAS_BENCH_PROBE: probe('small') },
    });
    expect(small.code).toBe(0);
    const mib = Buffer.alloc(1024 * 1024, 'x');
    function* stream() {
      yield `${job('mem-1')}\n{"pad":"`;
      for (let i = 0; i < 256; i++) yield mib;
      yield `"}\n${job('mem-2')}\n`;
    }
    const long = await caas(path.join(base, 'home-mem'), ['run', '-'], {
      input: Readable.from(stream(), { objectMode: false }),
      nodeArgs,
      env: { CAAS_BENCH_PROBE: probe('long') },
    });
    expect(long.code).toBe(2);
    expect(long.stdout).toMatch(/<stdin>:2: the line is 268435466 bytes long/);
    expect(long.stdout.match(/^RUN /gm)).toHaveLength(2);
    const rss = (name: string) => (JSON.parse(readFileSync(probe(name), 'utf8')) as { maxRssKiB: number }).maxRssKiB;
    // Holding the line would take 256 MiB more; the reader holds at most 8 MiB of it.
    expect(rss('long') - rss('small')).toBeLessThan(96 * 1024);
  });

  it('byte order marks are dropped in JSONL, JSON array files, folders of .json files and stdin', async () => {
    const bom = '\ufeff';
    const home = path.join(base, 'home-bom');
    const jsonl = path.join(base, 'bom.jsonl');
    writeFileSync(jsonl, `${bom}${job('bom-1')}\r\n${job('bom-2')}\r\n`);
    const array = path.join(base, 'bom-array.json');
    writeFileSync(array, `${bom}[\n  ${job('bom-3')},\n  ${job('bom-4')}\n]\n`);
    const folder = path.join(base, 'bom-folder');
    mkdirSync(folder);
    writeFileSync(path.join(folder, 'a.json'), `${bom}${job('bom-5')}`);
    writeFileSync(path.join(folder, 'b.json'), job('bom-6'));
    for (const [source, input] of [
      [jsonl, undefined],
      [array, undefined],
      [folder, undefined],
      ['-', `${bom}${job('bom-7')}\n`],
    ] as const) {
      const run = await caas(home, ['run', source], { input });
      expect(run.stderr, source).toBe('');
      expect(run.code, `${source}\n${run.stdout}`).toBe(0);
      expect(run.stdout).not.toMatch(/INVALID/);
    }
  });

  it('a file that is only a one-line JSON array is an array; a one-line array followed by more lines is JSONL with line 1 INVALID', async () => {
    const home = path.join(base, 'home-array');
    const only = path.join(base, 'only-array.json');
    writeFileSync(only, `[${job('arr-1')},${job('arr-2')}]\n\n`);
    const onlyRun = await caas(home, ['run', only, '--json']);
    expect(onlyRun.code).toBe(0);
    expect(
      jsonLines(onlyRun.stdout)
        .filter((l) => l.action === 'RUN')
        .map((l) => l.where),
    ).toEqual([`${only}[0]`, `${only}[1]`]);

    const mixed = path.join(base, 'array-then-lines.jsonl');
    writeFileSync(mixed, `[${job('arr-3')}]\n${job('arr-4')}\n${job('arr-5')}\n`);
    const mixedRun = await caas(home, ['run', mixed, '--json']);
    expect(mixedRun.code).toBe(2);
    const plan = jsonLines(mixedRun.stdout).filter((l) => l.type === 'plan');
    expect(plan.map((l) => [l.where, l.action])).toEqual([
      [`${mixed}:1`, 'INVALID'],
      [`${mixed}:2`, 'RUN'],
      [`${mixed}:3`, 'RUN'],
    ]);
    expect(plan[0]?.reason).toMatch(/a JSON array on line 1 followed by more lines: expected one job object per line \(JSONL\)/);
  });

  it('after a one-line array on line 1, a line longer than an array may be is INVALID alone: the rest of the JSONL runs', async () => {
    const file = path.join(base, 'array-then-huge-line.jsonl');
    const out = createWriteStream(file);
    out.write(`[${job('huge-1')}]\n{"pad":"`);
    const mib = Buffer.alloc(1024 * 1024, 'x');
    for (let i = 0; i <= MAX_ARRAY_BYTES / mib.length; i++) out.write(mib);
    out.write(`"}\n${job('huge-2')}\n${job('huge-3')}\n`);
    out.end();
    await finished(out);
    try {
      const lineBytes = MAX_ARRAY_BYTES + mib.length + '{"pad":""}'.length;
      const run = await caas(path.join(base, 'home-huge'), ['run', file, '--json']);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(2);
      const plan = jsonLines(run.stdout).filter((l) => l.type === 'plan');
      expect(plan.map((l) => [l.where, l.action])).toEqual([
        [`${file}:1`, 'INVALID'],
        [`${file}:2`, 'INVALID'],
        [`${file}:3`, 'RUN'],
        [`${file}:4`, 'RUN'],
      ]);
      expect(plan[0]?.reason).toMatch(/^a JSON array on line 1 followed by more lines/);
      expect(plan[1]?.reason).toBe(
        `the line is ${lineBytes} bytes long: expected one job of at most ${MAX_JOB_BYTES} bytes (8 MiB) per line`,
      );
    } finally {
      rmSync(file, { force: true });
    }
  });

  it('bytes that are not UTF-8 make their line INVALID instead of turning into U+FFFD in a name', async () => {
    const file = path.join(base, 'latin1.jsonl');
    writeFileSync(file, Buffer.concat([Buffer.from(`${job('u-1')}\n`), Buffer.from(job('caf\u00e9'), 'latin1'), Buffer.from('\n')]));
    const run = await caas(path.join(base, 'home-utf8'), ['run', file]);
    expect(run.code).toBe(2);
    expect(run.stdout).toMatch(new RegExp(`${quoted(file)}:2: not UTF-8 text`));
    expect(run.stdout.match(/^RUN /gm)).toHaveLength(1);
  });
});

describe('submission mode: the same problems in a submit file or config are REJECTED, answered once', () => {
  const BUCKET = 'free-form';
  let home: string;
  let bucketDir: string;
  const put = (key: string, body: string) => {
    const file = path.join(bucketDir, key);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, body);
  };
  const read = (key: string) => {
    const file = path.join(bucketDir, key);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  };
  const submit = (ts: string, fields: Record<string, unknown>) =>
    JSON.stringify({ dataname: 'inputs/d1.json', configname: 'configs/ok.json', timestamp: ts, ...fields });

  const REJECTED: { ts: string; says: RegExp }[] = [
    { ts: 'c-surrogate', says: /config demo\/configs\/surrogate\.json: extra: a lone surrogate \(\\ud800\)/ },
    {
      ts: 'c-deep',
      says: /config demo\/configs\/deep\.json: extra\.0\.0\.0\.0\.0\.0\.0\.…: objects and arrays nested more than 64 levels deep/,
    },
    { ts: 'c-proto', says: /config demo\/configs\/proto\.json: __proto__: the key "__proto__" is not allowed/ },
    { ts: 'c-constructor', says: /config demo\/configs\/constructor\.json: extra\.constructor: the key "constructor"/ },
    { ts: 's-surrogate', says: /the submit file demo\/submissions\/s-surrogate_submit\.json: instance_type: a lone surrogate/ },
    {
      ts: 's-deep',
      says: /the submit file demo\/submissions\/s-deep_submit\.json: note\.0\.0\.0\.0\.0\.0\.0\.…: objects and arrays nested/,
    },
    { ts: 's-prototype', says: /the submit file demo\/submissions\/s-prototype_submit\.json: prototype: the key "prototype"/ },
    { ts: 's-nul', says: /dataname "inputs\/d1\.json\\u0000": control characters/ },
    // The same guards for a YAML config, and YAML's own: aliases that expand exponentially.
    { ts: 'y-deep', says: /config demo\/configs\/deep\.yaml:1:\d+: invalid YAML: nested more than 64 levels deep/ },
    { ts: 'y-bomb', says: /config demo\/configs\/bomb\.yaml: invalid YAML: its aliases expand to too much/ },
    { ts: 'y-proto', says: /config demo\/configs\/proto\.yaml: __proto__: the key "__proto__" is not allowed/ },
    { ts: 'y-inf', says: /config demo\/configs\/inf\.yaml: extra: Infinity is not a JSON number/ },
  ];
  let first: Awaited<ReturnType<typeof runCli>>;

  beforeAll(async () => {
    home = path.join(base, 'home-watch');
    bucketDir = path.join(home, 'buckets', BUCKET);
    put('demo/inputs/d1.json', '{"units": []}\n');
    put('demo/configs/ok.json', '{"wait": 0}\n');
    put('demo/configs/bom.json', '\ufeff{"wait": 0.01}\n');
    put('demo/configs/surrogate.json', '{"extra": "\\ud800"}\n');
    put('demo/configs/deep.json', `{"extra": ${nested(3000)}}\n`);
    put('demo/configs/proto.json', '{"__proto__": {"wait": 5}}\n');
    put('demo/configs/constructor.json', '{"extra": {"constructor": {"prototype": 1}}}\n');
    put('demo/configs/deep.yaml', `extra: ${nested(3000)}\n`);
    put('demo/configs/bomb.yaml', YAML_BOMB);
    put('demo/configs/proto.yaml', '__proto__: {wait: 5}\n');
    put('demo/configs/inf.yaml', 'extra: .inf\n');
    put('demo/submissions/ok_submit.json', submit('ok', {}));
    put('demo/submissions/bom_submit.json', `\ufeff${submit('bom', { configname: 'configs/bom.json' })}`);
    for (const name of ['surrogate', 'deep', 'proto', 'constructor']) {
      put(`demo/submissions/c-${name}_submit.json`, submit(`c-${name}`, { configname: `configs/${name}.json` }));
    }
    for (const name of ['deep', 'bomb', 'proto', 'inf']) {
      put(`demo/submissions/y-${name}_submit.json`, submit(`y-${name}`, { configname: `configs/${name}.yaml` }));
    }
    put('demo/submissions/s-surrogate_submit.json', submit('s-surrogate', { instance_type: '\ud800' }));
    put('demo/submissions/s-deep_submit.json', submit('s-deep', {}).replace(/^\{/, `{"note":${nested(3000)},`));
    put('demo/submissions/s-prototype_submit.json', submit('s-prototype', {}).replace(/^\{/, '{"prototype":{},'));
    put('demo/submissions/s-nul_submit.json', submit('s-nul', { dataname: 'inputs/d1.json\u0000' }));
    // A short lease: the second look below comes after it ran out, when an unanswered submission
    // would be taken up again (no other watcher competes, so a short lease costs nothing here).
    first = await caas(home, ['watch', '--bucket', BUCKET, '--once', '--compute', 'inline', '--lease-seconds', '1'], {
      env: { CAAS_STATUS_INTERVAL_MS: '200' },
    });
  });

  it.each(REJECTED)('$ts: a certificate line says where and why, end.txt says REJECTED', ({ ts, says }) => {
    const folder = folderKeys(BUCKET, 'demo', ts);
    const certificate = read(folder.certificate);
    expect(certificate).toMatch(/caas watcher: submission .* rejected: /);
    expect(certificate).toMatch(says);
    expect(certificate?.trimEnd().split('\n')).toHaveLength(1);
    expect(read(folder.end)).toMatch(/^REJECTED\n/);
  });

  it('the valid submissions beside them ran, byte order marks and all', () => {
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/processed 14 submit file\(s\)\n/);
    for (const ts of ['ok', 'bom']) expect(read(folderKeys(BUCKET, 'demo', ts).end), ts).toMatch(/^SUCCESS\n/);
  });

  it('a second look, after the leases ran out, answers nothing again: nothing is retried forever', async () => {
    await sleep(1100);
    const before = treeDigest(bucketDir);
    const again = await caas(home, ['watch', '--bucket', BUCKET, '--once', '--compute', 'inline']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe('processed 14 submit file(s)\n');
    expect(treeDigest(bucketDir)).toBe(before);
  });
});

describe('unknown schemes and compute names exit 2 before touching anything', () => {
  // A used workspace (buckets, DB) must come out byte-identical; a fresh one must not appear at all.
  const home = path.join(base, 'home-flags');
  const jobs = path.join(base, 'flags.jsonl');
  beforeAll(async () => {
    writeFileSync(jobs, `${job('flags-1')}\n`);
    expect((await caas(home, ['run', jobs, '--execute', '--compute', 'inline'])).code).toBe(0);
    // A new job, so that --execute would have buckets to make and a record to write.
    writeFileSync(jobs, `${job('flags-2')}\n`);
  });

  it.each([
    { flags: ['--db', 'bogus://x'], args: [], says: /--db "bogus:\/\/x" is not supported: use sqlite:<file>.* or mongodb:\/\/host\/db/ },
    {
      flags: ['--store', 'ftp://host/x'],
      args: [],
      says: /--store "ftp:\/\/host\/x" is not supported: use file: .*, or s3:\/\//,
    },
    { flags: [], args: ['--compute', 'bogus'], says: /--compute "bogus" is not supported: use local .*, inline .*, ec2 .* or batch/ },
    { flags: [], args: ['--compute', 'bogus', '--execute'], says: /--compute "bogus" is not supported/ },
    { flags: ['--db', 'bogus://x'], args: ['--execute'], says: /--db "bogus:\/\/x" is not supported/ },
    // Launchers whose machines cannot read this machine's folders, and a blueprint without the section batch needs.
    { flags: [], args: ['--compute', 'batch', '--execute'], says: /--compute batch needs --store s3:\/\// },
    { flags: [], args: ['--compute', 'ec2', '--execute'], says: /--compute ec2 needs --store s3:\/\// },
  ])('$flags $args', async ({ flags, args, says }) => {
    const before = treeDigest(home);
    const run = await caas(home, [...flags, 'run', jobs, ...args]);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(says);
    expect(run.stderr).not.toMatch(/\n\s+at /);
    expect(treeDigest(home)).toBe(before);
    const fresh = path.join(base, 'never-created');
    expect((await caas(fresh, [...flags, 'run', jobs, ...args])).code).toBe(2);
    expect(existsSync(fresh)).toBe(false);
  });

  it('caas watch checks --compute before it creates the bucket or the DB', async () => {
    const home = path.join(base, 'home-watch-bogus');
    const run = await caas(home, ['watch', '--bucket', 'free-form', '--once', '--compute', 'bogus']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--compute "bogus" is not supported/);
    expect(existsSync(home)).toBe(false);
  });

  it('caas watch refuses a launcher that cannot reach the store before it creates the bucket or the DB', async () => {
    const home = path.join(base, 'home-watch-batch');
    const run = await caas(home, ['watch', '--bucket', 'free-form', '--once', '--compute', 'batch']);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/--compute batch needs --store s3:\/\//);
    expect(existsSync(home)).toBe(false);
  });
});

describe("a metadata.sqlite that is empty or someone else's", () => {
  const jobsFile = () => {
    const file = path.join(base, 'sqlite-jobs.jsonl');
    writeFileSync(file, `${job('db-1')}\n`);
    return file;
  };
  const workspace = (name: string, fill: (file: string) => void) => {
    const home = path.join(base, name);
    mkdirSync(home, { recursive: true });
    const file = path.join(home, 'metadata.sqlite');
    fill(file);
    return { home, file };
  };
  const tables = (file: string) => {
    const db = new BetterSqlite3(file, { readonly: true });
    try {
      return db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
    } finally {
      db.close();
    }
  };

  it('0 bytes is an empty database: a dry run plans everything and leaves it at 0 bytes; --execute creates the tables in it', async () => {
    const { home, file } = workspace('home-zero', (f) => writeFileSync(f, ''));
    const dry = await caas(home, ['run', jobsFile()]);
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/plan: 1 to run/);
    expect(statSync(file).size).toBe(0);
    const run = await caas(home, ['run', jobsFile(), '--execute', '--compute', 'inline']);
    expect(run.code).toBe(0);
    expect(tables(file)).toEqual([
      'data_assets',
      'queue',
      'record_entries',
      'record_index_paths',
      'record_index_pending',
      'record_index_state',
      'records',
      'slots',
    ]);
  });

  it("0 bytes is refused, naming the file, where the DB must hold the runners' records (caas reap)", async () => {
    const { home, file } = workspace('home-zero-reap', (f) => writeFileSync(f, ''));
    const reap = await caas(home, ['reap']);
    expect(reap.code).toBe(2);
    expect(reap.stderr).toContain(`${file} is an empty database (0 bytes), not the one the runners use`);
  });

  it.each([
    {
      name: 'a text file',
      fill: (f: string) => writeFileSync(f, 'name,score\nada,1\n'),
      says: 'is not an SQLite database: expected a caas metadata DB',
    },
    {
      name: "another program's SQLite DB",
      fill: (f: string) => {
        const db = new BetterSqlite3(f);
        db.exec("CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada')");
        db.close();
      },
      says: 'is an SQLite database of something else (tables people): expected a caas metadata DB',
    },
  ])('$name: named in the error with what is expected, exit 2, left as it was', async ({ name, fill, says }) => {
    const { home, file } = workspace(`home-foreign-${name.replace(/\W+/g, '-')}`, fill);
    const before = treeDigest(home);
    for (const args of [
      ['run', jobsFile()],
      ['run', jobsFile(), '--execute', '--compute', 'inline'],
      ['catalog', 'import', '-'],
    ]) {
      const run = await caas(home, args, { input: '{"_id":"a1","name":"a1","location":"file:///tmp/a1/"}\n' });
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toContain(`${file} ${says}`);
    }
    expect(treeDigest(home)).toBe(before);
  });
});

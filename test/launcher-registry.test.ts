import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  blueprintIssues,
  blueprintSchema,
  type CaasMachine,
  checkComputeName,
  checkFleetName,
  describeLaunchers,
  type Fleet,
  fleetNames,
  type LaunchedJob,
  type Launcher,
  type LauncherOptions,
  openFleet,
  openLauncher,
  registerLauncher,
  UnknownComputeError,
} from '../backends/compute/index.ts';
import { openDatabase } from '../backends/db/index.ts';
import { owner, recordDraft } from '../fixtures/records.ts';
import type { Blueprint } from '../models/blueprint.ts';
import { reapOutput } from './support/reap-cli.ts';
import { AnalysisRepo, planOneJobEach, removeDir, scratchDir } from './support/workspace.ts';

/**
 * A launcher added from this file alone, as a Kubernetes one would be added in one file of
 * backends/compute: registering it is all --compute, blueprints and `caas reap` need to know of it.
 * (The integration tier runs each file in its own module graph, so these kinds stay here.)
 */
const ToySection = z
  .object({
    pool: z.string().min(1).describe('the pool the jobs go to'),
    slots: z.number().int().positive().default(1),
  })
  .strict();

class ToyLauncher implements Launcher {
  readonly name = 'toy';
  constructor(readonly options: LauncherOptions) {}

  async launch(): Promise<LaunchedJob> {
    throw new Error('a toy launches nothing: only its registration is under test');
  }

  refuse(analysis: string, blueprint: Blueprint): string | undefined {
    return ToySection.safeParse(blueprint.toy).success ? undefined : `the blueprint of ${analysis} has no valid "toy" section`;
  }

  async close(): Promise<void> {}
}

const LIVE_IDENTITY = recordDraft({ seed: 'toy-held' })._id;
const UNKNOWN_IDENTITY = 'e'.repeat(64);

class ToyFleet implements Fleet {
  readonly noun = 'pod';
  readonly terminated: string[] = [];
  constructor(readonly region: string) {}

  async list(): Promise<CaasMachine[]> {
    const deadline = new Date(Date.now() + 3_600_000).toISOString();
    const pod = (id: string, identity: string) => ({
      id,
      state: 'running',
      tags: { 'caas:identity': identity, 'caas:analysis': 'toy-analysis', 'caas:attempt': '1', 'caas:deadline': deadline },
    });
    return [pod('pod-held', LIVE_IDENTITY), pod('pod-orphan', UNKNOWN_IDENTITY)];
  }

  async terminate(ids: readonly string[]): Promise<void> {
    this.terminated.push(...ids);
  }

  close(): void {}
}

const fleets: ToyFleet[] = [];
registerLauncher({
  name: 'toy',
  description: 'a pod per job',
  open: async (options) => new ToyLauncher(options),
  fleet: async (region) => {
    const fleet = new ToyFleet(region);
    fleets.push(fleet);
    return fleet;
  },
  blueprint: { key: 'toy', schema: ToySection, description: 'for --compute toy: the pool its pods run in' },
});
registerLauncher({
  name: 'toy-nofleet',
  description: 'a job that ends with its runner',
  open: async (options) => new ToyLauncher(options),
});

describe('a launcher registered from a test', () => {
  it('--compute accepts it and opens it with the runner’s options; an unknown name lists it with the built-in ones', async () => {
    expect(() => checkComputeName('toy')).not.toThrow();
    const launcher = await openLauncher('toy', { storeUrl: 'file:' });
    expect(launcher).toBeInstanceOf(ToyLauncher);
    expect((launcher as ToyLauncher).options).toEqual({ storeUrl: 'file:' });
    expect(describeLaunchers()).toMatch(
      /^local \(.*\), inline \(.*\), ec2 \(.*\), batch \(.*\), toy \(a pod per job\) or toy-nofleet \(.*\)$/,
    );
    expect(() => checkComputeName('kubernetes')).toThrow(UnknownComputeError);
    expect(() => checkComputeName('kubernetes')).toThrow(/--compute "kubernetes" is not supported: use local .* toy \(a pod per job\)/);
  });

  it('its blueprint section is checked with its own schema, a bad one refused with the path of the field', () => {
    expect(blueprintIssues({ bucket: 'toy-bucket', toy: { pool: 'gpu' } })).toEqual([]);
    const issues = blueprintIssues({ bucket: 'toy-bucket', toy: { pool: '', slot: 2 } });
    expect(issues.map((issue) => issue.path.join('.')).sort()).toEqual(['toy', 'toy.pool']);
    expect(issues.find((issue) => issue.path.join('.') === 'toy')?.message).toMatch(/slot/);
    // A key no launcher owns lists the toy's section beside batch's.
    const [unknown] = blueprintIssues({ bucket: 'toy-bucket', tyo: { pool: 'gpu' } });
    expect(unknown).toMatchObject({ path: ['tyo'] });
    expect(unknown?.message).toMatch(/or a launcher's section \(batch: .*; toy: for --compute toy: the pool its pods run in\)$/);
    expect(z.toJSONSchema(blueprintSchema(), { io: 'input' }).properties).toHaveProperty('toy');
  });

  it('refuses kinds that would clash: a name taken or starting with "local", a section that is a field or taken', () => {
    const open = async (options: LauncherOptions) => new ToyLauncher(options);
    expect(() => registerLauncher({ name: 'toy', description: 'again', open })).toThrow(/already registered/);
    expect(() => registerLauncher({ name: 'localish', description: 'x', open })).toThrow(/may not start with "local"/);
    const section = (key: string) => ({ key, schema: ToySection, description: 'x' });
    expect(() => registerLauncher({ name: 'toy-2', description: 'x', open, blueprint: section('region') })).toThrow(
      /would shadow the blueprint's own field/,
    );
    expect(() => registerLauncher({ name: 'toy-3', description: 'x', open, blueprint: section('batch') })).toThrow(
      /is already launcher batch's/,
    );
    expect(() => checkComputeName('toy-2')).toThrow(UnknownComputeError);
  });
});

describe('its blueprint section where analyses are loaded to run', () => {
  let base: string;
  let repo: AnalysisRepo;
  beforeAll(() => {
    base = scratchDir('toy-launcher');
    repo = new AnalysisRepo(base, []);
    repo.addScriptAnalysis('toy-good', 'exit 0\n', { toy: { pool: 'gpu' } });
    repo.addScriptAnalysis('toy-bad', 'exit 0\n', { toy: { slots: 0 } });
  });
  afterAll(() => removeDir(base));

  it('caas run --compute toy plans the valid analysis and marks the other INVALID, naming toy.pool and toy.slots', async () => {
    const { entries } = await planOneJobEach(base, repo, ['toy-good', 'toy-bad'], 'toy');
    expect(entries.map((entry) => entry.action)).toEqual(['RUN', 'INVALID']);
    expect(entries[1]?.reason).toMatch(/toy-bad\/blueprint\.json: toy\.pool: .*; toy\.slots: /);
  });
});

describe('its fleet for caas reap', () => {
  let scratch: string;
  let dbUrl: string;
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'caas-toy-reap-'));
    dbUrl = `sqlite:${path.join(scratch, 'metadata.sqlite')}`;
    const db = await openDatabase(dbUrl, { home: scratch });
    const draft = recordDraft({ seed: 'toy-held' });
    await db.claim(draft._id, { draft, owner: owner('toy-runner'), leaseMs: 3_600_000 });
    await db.close();
  });
  afterAll(() => rm(scratch, { recursive: true, force: true }));

  function reap(...args: string[]): Promise<string> {
    return reapOutput(['--home', scratch, '--db', dbUrl, '--region', 'toy-region', ...args]);
  }

  it('is listed only when the kind has one', async () => {
    expect(fleetNames()).toEqual(['ec2', 'batch', 'toy']);
    expect(() => checkFleetName('toy')).not.toThrow();
    expect(() => checkFleetName('toy-nofleet')).toThrow(
      /--compute "toy-nofleet" has no machines to reap: use ec2, batch, toy \(comma-separated\)/,
    );
    await expect(openFleet('toy-nofleet', { region: 'toy-region' })).rejects.toThrow(UnknownComputeError);
    expect(await openFleet('toy', { region: 'toy-region' })).toMatchObject({ noun: 'pod', region: 'toy-region' });
  });

  it('caas reap --compute toy lists and terminates its machines nobody waits for, and leaves held ones alone', async () => {
    const listed = (await reap('--compute', 'toy')).trimEnd().split('\n');
    expect(listed[0]).toMatch(/^POD\s+ANALYSIS\s+IDENTITY\s+WHY$/);
    expect(listed.slice(1, -1).map((line) => line.split(/\s+/)[0])).toEqual(['pod-orphan']);
    expect(listed.at(-1)).toBe('1 pod(s) to reap (dry run: nothing was terminated; add --execute to terminate them)');
    expect((await reap('--compute', 'toy', '--execute')).trimEnd().split('\n').at(-1)).toBe('terminated 1 pod(s)');
    expect(fleets.at(-1)?.terminated).toEqual(['pod-orphan']);
    await expect(reap('--compute', 'toy-nofleet')).rejects.toThrow(/has no machines to reap/);
  });
});
